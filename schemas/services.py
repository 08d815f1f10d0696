"""Services directory messages: the gateways and registries that records may name."""

from __future__ import annotations

from datetime import datetime

from schemas.base import Wire
from schemas.types import SearchStyle, ServiceKind, ServiceStatus

__all__ = ("Service",)


class Service(Wire):
    """A member service as the services directory knows it."""

    service_id: str
    kind: ServiceKind
    name: str
    base_url: str
    search_style: SearchStyle
    status: ServiceStatus
    created_at: datetime
    updated_at: datetime
