"""FHIR R4 facade (DESIGN 4.2): CapabilityStatement, Endpoint, Basic (RegistryRecord), definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Router

from registry.audit.controller import AuditEventController

if TYPE_CHECKING:
    from registry.config import Settings

__all__ = ("fhir_router",)


def fhir_router(settings: Settings) -> Router:
    """Every FHIR route under ``/fhir``."""
    return Router(
        path="/fhir", route_handlers=[AuditEventController], request_max_body_size=settings.http.max_body_bytes
    )
