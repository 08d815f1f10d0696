"""The conformance resources the server publishes (profile, extensions, terminology, search
parameters): read by id, search by canonical ``url``. Public: they describe the API, not patients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from registry import errors
from registry.fhirapi.io import fhir_base, fhir_response, fhir_route, self_link
from registry.fhirapi.search import Criteria
from schemas.fhir.bundle import searchset
from schemas.fhir.capability import ResourceCapability, SearchParam

if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = ("CONFORMANCE", "CONFORMANCE_TYPES", "Conformance", "conformance_controllers")

ResourceId = Annotated[str, PathParameter(description="The id of the conformance resource.")]

CONFORMANCE_TYPES = ("StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "OperationDefinition")

_URL = SearchParam(
    "url",
    "uri",
    "The canonical URL (optionally `url|version`).",
    definition="http://hl7.org/fhir/SearchParameter/conformance-url",
)


class Conformance:
    """The published conformance resources, by type and id."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self._by_type: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in CONFORMANCE_TYPES}
        for resource in resources:
            self._by_type[resource["resourceType"]][resource["id"]] = resource

    def read(self, resource_type: str, resource_id: ResourceId) -> dict[str, Any]:
        """One resource.

        Raises:
            NotFound: the server publishes no such resource.
        """
        found = self._by_type[resource_type].get(resource_id)
        if found is None:
            raise errors.NotFound(f"no {resource_type} {resource_id!r} is published here")
        return found

    def search(self, resource_type: str, criteria: Criteria, base: str, self_url: str) -> dict[str, Any]:
        """A searchset Bundle of the resources of a type, optionally only those with a canonical ``url``."""
        canonicals = criteria.any_of({"url": _canonical})
        matches = [
            resource
            for resource in self._by_type[resource_type].values()
            if canonicals is None
            or any(url == resource["url"] and version in (None, resource["version"]) for url, version in canonicals)
        ]
        return searchset(base, matches, total=len(matches), links=[("self", self_url)])


def _canonical(_name: str, text: str) -> tuple[str, str | None]:
    url, bar, version = text.partition("|")
    return url, (version if bar else None)


CONFORMANCE = tuple(
    ResourceCapability(
        kind,
        f"The {kind} resources that define the IEF profile, extensions, codes and operations (public).",
        ("read", "search-type"),
        search=(_URL,),
    )
    for kind in CONFORMANCE_TYPES
)
"""What the server does with each conformance resource type: read, and search by ``url``."""


Catalogue = NamedDependency[Conformance]


def _controller(capability: ResourceCapability) -> type[Controller]:
    kind = capability.type

    class ConformanceController(Controller):
        path = f"/{kind}"
        tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

        @get("/{resource_id:str}", operation_id=f"read{kind}", opt=fhir_route(public=True))
        async def read(self, fhir_conformance: Catalogue, resource_id: ResourceId) -> Response[bytes]:
            """Read one published conformance resource."""
            return fhir_response(fhir_conformance.read(kind, resource_id))

        @get("/", operation_id=f"search{kind}", opt=fhir_route(capability.query(), public=True))
        async def search(self, fhir_conformance: Catalogue, request: Request[Any, Any, Any]) -> Response[bytes]:
            """Search the published conformance resources of this type by canonical URL."""
            bundle = fhir_conformance.search(kind, Criteria.of(request), fhir_base(request), self_link(request))
            return fhir_response(bundle)

    ConformanceController.__name__ = ConformanceController.__qualname__ = f"{kind}Controller"
    return ConformanceController


def conformance_controllers(capabilities: Iterable[ResourceCapability]) -> list[type[Controller]]:
    """One controller per conformance resource type."""
    return [_controller(capability) for capability in capabilities]
