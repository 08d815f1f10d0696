"""``Endpoint``: the member services (gateways and registries) of the directory. Read and search."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from registry.config import FhirSettings
from registry.fhir.endpoint.resources import EndpointResources
from registry.fhirapi.io import fhir_base, fhir_response, fhir_route, last_modified
from registry.fhirapi.search import SearchQuery
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import PAGING, ResourceCapability, SearchParam

__all__ = ("ENDPOINT", "EndpointController")

EndpointId = Annotated[str, PathParameter(description="The Endpoint id: the service ID.")]

_SCOPES = ("system/Endpoint.rs",)

ENDPOINT = ResourceCapability(
    "Endpoint",
    "Member services of this registry: gateways that hold imaging and registries it federates with. "
    "The id and the identifier are the IEF service ID; the address is the service's FHIR base.",
    ("read", "search-type"),
    search=(
        SearchParam("_id", "token", "The service ID.", f"{HL7_SEARCH_PARAMETER}/Resource-id"),
        SearchParam(
            "identifier",
            "token",
            "The IEF service ID: `<service ID system>|<id>` or a bare id.",
            f"{HL7_SEARCH_PARAMETER}/Endpoint-identifier",
        ),
        SearchParam(
            "status",
            "token",
            "`active` (enabled services) or `off` (disabled).",
            f"{HL7_SEARCH_PARAMETER}/Endpoint-status",
        ),
        SearchParam(
            "name",
            "string",
            "Case-insensitive start of the service's name (give it once).",
            f"{HL7_SEARCH_PARAMETER}/Endpoint-name",
        ),
        *PAGING,
    ),
)

Endpoints = NamedDependency[EndpointResources]
Settings = NamedDependency[FhirSettings]


class EndpointController(Controller):
    """Member services as Endpoint resources."""

    path = "/Endpoint"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/{endpoint_id:str}", operation_id="readEndpoint", opt=fhir_route(scopes=_SCOPES))
    async def read(self, fhir_endpoints: Endpoints, endpoint_id: EndpointId) -> Response[bytes]:
        """Read one member service."""
        service = await fhir_endpoints.read(endpoint_id)
        return fhir_response(
            fhir_endpoints.resource(service), headers={"Last-Modified": last_modified(service.updated_at)}
        )

    @get("/", operation_id="searchEndpoint", opt=fhir_route(ENDPOINT.query(), scopes=_SCOPES))
    async def search(
        self, fhir_endpoints: Endpoints, fhir_settings: Settings, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search member services by id, identifier, status and name."""
        return fhir_response(await fhir_endpoints.search(SearchQuery.paged(request, fhir_settings), fhir_base(request)))
