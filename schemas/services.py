"""Services directory messages: the gateways and registries that records may name."""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas.base import Wire
from schemas.types import Jurisdiction, SearchStyle, ServiceKind, ServiceStatus

__all__ = ("Organisation", "Service")


class Organisation(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True, frozen=True):
    """What the directory says of the organisation behind a service (all optional)."""

    hpio: str | None = None
    """The organisation's HPI-O (16 digits, prefix 800362, Luhn check digit)."""
    jurisdiction: Jurisdiction | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    capability_statement_url: str | None = None
    """Where the service's FHIR CapabilityStatement is."""
    fallback: str | None = None
    """How to get imaging from the service by other means while it is not on FHIR ("phone the practice")."""


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
    organisation: Organisation = Organisation()
    token_endpoint: str | None = None
    """The token endpoint the operator chose for ``client_id`` (None: the one the service announces on its origin)."""
