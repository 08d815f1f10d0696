"""``GET /fhir/metadata``: the CapabilityStatement, rendered from the declarations the routes use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency

from registry.fhirapi.io import fhir_response, fhir_route
from registry.http import base_url
from schemas.fhir.capability import capability_statement

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.capability import ResourceCapability

__all__ = ("Metadata", "MetadataController")


class Metadata:
    """The server's capabilities: every resource the FHIR router serves, declared once."""

    def __init__(
        self, capabilities: tuple[ResourceCapability, ...], *, canon: Canonicals, version: str, date: datetime
    ) -> None:
        self.capabilities = capabilities
        self._canon = canon
        self.version = version
        self.date = date

    def statement(self, server: str) -> dict[str, Any]:
        """The CapabilityStatement of the FHIR base of the server at ``server`` (its token endpoint there too)."""
        return capability_statement(
            self.capabilities, canon=self._canon, software_version=self.version, base_url=f"{server}/fhir",
            token_url=f"{server}/auth/token", date=self.date,
        )  # fmt: skip


class MetadataController(Controller):
    """The capabilities interaction."""

    path = "/metadata"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="capabilities", opt=fhir_route(public=True))
    async def capabilities(
        self, fhir_metadata: NamedDependency[Metadata], request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """What this FHIR server implements: resources, interactions, search parameters, profiles."""
        return fhir_response(fhir_metadata.statement(base_url(request)))
