"""``Endpoint``: the member services (gateways and registries) of the directory. Read and search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from registry.config import FhirSettings
from registry.fhir.endpoint.resources import EndpointResources, OrganizationResources
from registry.fhirapi.io import fhir_base, fhir_response, fhir_route, last_modified, read_resource
from registry.fhirapi.search import SearchQuery
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import PAGING, ResourceCapability, SearchParam

if TYPE_CHECKING:
    from schemas.services import Service

__all__ = ("ENDPOINT", "ORGANIZATION", "EndpointController", "OrganizationController")

EndpointId = Annotated[str, PathParameter(description="The Endpoint id: the service ID.")]
OrganizationId = Annotated[str, PathParameter(description="The Organization id: the service ID.")]

_SCOPES = ("system/Endpoint.rs",)
_OPERATOR = ("admin",)

ENDPOINT = ResourceCapability(
    "Endpoint",
    "Member services of this registry: gateways that hold imaging and registries it federates with. "
    "The id and the identifier are the IEF service ID; the address is the service's FHIR base. The operator "
    "(admin) adds and changes services by create and update, with the validation of `services add`; "
    "managingOrganization references the Organization of the same id.",
    ("read", "search-type", "create", "update"),
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

ORGANIZATION = ResourceCapability(
    "Organization",
    "The organisation behind each member service (same id as its Endpoint): name, HPI-O identifier, contact, "
    "jurisdiction (address.state). Read-only: it changes with its Endpoint.",
    ("read", "search-type"),
    search=(
        SearchParam("_id", "token", "The service ID.", f"{HL7_SEARCH_PARAMETER}/Resource-id"),
        SearchParam(
            "identifier",
            "token",
            "The HPI-O: `http://ns.electronichealth.net.au/id/hi/hpio/1.0|<HPI-O>` or a bare HPI-O.",
            f"{HL7_SEARCH_PARAMETER}/Organization-identifier",
        ),
        SearchParam(
            "name",
            "string",
            "Case-insensitive start of the organisation's name (give it once).",
            f"{HL7_SEARCH_PARAMETER}/Organization-name",
        ),
        SearchParam(
            "active",
            "token",
            "`true`: its service is routed (enabled); `false`: disabled or retired.",
            f"{HL7_SEARCH_PARAMETER}/Organization-active",
        ),
        *PAGING,
    ),
)

Endpoints = NamedDependency[EndpointResources]
Organizations = NamedDependency[OrganizationResources]
Settings = NamedDependency[FhirSettings]


def _saved(
    fhir_endpoints: EndpointResources, saved: tuple[Service, bool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    service, created = saved
    headers = {"Last-Modified": last_modified(service.updated_at)}
    if created:
        headers["Location"] = f"{fhir_base(request)}/Endpoint/{service.service_id}"
    return fhir_response(fhir_endpoints.resource(service), status=201 if created else 200, headers=headers)


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

    @post("/", operation_id="createEndpoint", status_code=201, opt=fhir_route(scopes=_OPERATOR))
    async def create(self, fhir_endpoints: Endpoints, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Add a member service (the operator): 201, or 200 when the service ID is already in the directory."""
        claim = await read_resource(request, fhir_endpoints.parse)
        return _saved(fhir_endpoints, await fhir_endpoints.create(claim), request)

    @put("/{endpoint_id:str}", operation_id="updateEndpoint", opt=fhir_route(scopes=_OPERATOR))
    async def update(
        self, fhir_endpoints: Endpoints, endpoint_id: EndpointId, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Add (201) or change (200) the member service with this service ID (the operator)."""
        claim = await read_resource(request, fhir_endpoints.parse)
        return _saved(fhir_endpoints, await fhir_endpoints.update(endpoint_id, claim), request)


class OrganizationController(Controller):
    """The organisations behind member services."""

    path = "/Organization"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/{organization_id:str}", operation_id="readOrganization", opt=fhir_route(scopes=_SCOPES))
    async def read(self, fhir_organizations: Organizations, organization_id: OrganizationId) -> Response[bytes]:
        """Read the organisation of one member service."""
        service = await fhir_organizations.read(organization_id)
        return fhir_response(
            fhir_organizations.resource(service), headers={"Last-Modified": last_modified(service.updated_at)}
        )

    @get("/", operation_id="searchOrganization", opt=fhir_route(ORGANIZATION.query(), scopes=_SCOPES))
    async def search(
        self, fhir_organizations: Organizations, fhir_settings: Settings, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search organisations by id, HPI-O, name and whether their service is routed."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_organizations.search(query, fhir_base(request)))
