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
    client_id: str | None = None
    """The client ID this service gave us: we authenticate to it with ``private_key_jwt``."""
    bearer_token_file: str | None = None
    """A file holding the fixed bearer token this service takes from us (instead of ``client_id``)."""
    token_endpoint: str | None = None
    """The token endpoint the operator chose for ``client_id`` (None: the one the service announces on its origin)."""
