"""Member services as FHIR ``Endpoint`` resources: the FHIR rules over ``DirectoryService``. No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.fhirapi.search import SearchQuery, any_text, code_token, service_token, string_prefix
from schemas.fhir.bundle import searchset
from schemas.fhir.endpoint import ENDPOINT_STATUS, endpoint
from schemas.types import InvalidValueError, parse_service_id

if TYPE_CHECKING:
    from registry.directory.service import DirectoryService
    from schemas.fhir.canonical import Canonicals
    from schemas.services import Service

__all__ = ("ENDPOINT_STATUS_CODES", "EndpointResources")

ENDPOINT_STATUS_CODES = ("active", "suspended", "error", "off", "entered-in-error", "test")
"""Every R4 ``Endpoint.status`` code; only ``active`` (enabled) and ``off`` (disabled) occur here."""

_STATUS_SYSTEM = "http://hl7.org/fhir/endpoint-status"
_DIRECTORY_STATUS = {fhir: str(status) for status, fhir in ENDPOINT_STATUS.items()}


class EndpointResources:
    """Read and search the services directory as Endpoint resources."""

    def __init__(self, directory: DirectoryService, canon: Canonicals) -> None:
        self._directory = directory
        self._canon = canon
        self._status = code_token({code: code for code in ENDPOINT_STATUS_CODES}, _STATUS_SYSTEM)
        self._identifier = service_token(canon.service_id_system)

    def resource(self, service: Service) -> dict[str, Any]:
        """A directory entry as an Endpoint."""
        return endpoint(self._canon, service)

    async def read(self, endpoint_id: str) -> Service:
        """One service by its Endpoint id (its service ID).

        Raises:
            NotFound: no service has this id.
        """
        service_id = _service_id_or_none(endpoint_id)
        if service_id is None:
            raise errors.NotFound("no such Endpoint")
        return await self._directory.get(service_id)

    async def search(self, query: SearchQuery, base: str) -> dict[str, Any]:
        """A searchset Bundle of the services the query selects (enabled and disabled alike unless ``status``)."""
        ids = query.any_of({"_id": any_text})
        identified = query.any_of({"identifier": self._identifier})
        statuses = query.any_of({"status": self._status})
        names = query.any_of({"name": string_prefix}, once=True)
        wanted = None if ids is None else {sid for sid in map(_service_id_or_none, ids) if sid is not None}
        if identified is not None:
            wanted = identified if wanted is None else wanted & identified
        stored = None if statuses is None else {_DIRECTORY_STATUS[c] for c in statuses if c in _DIRECTORY_STATUS}
        services: list[Service] = []
        total = 0
        if wanted != set() and stored != set():  # else nothing can match
            services, total = await self._directory.search(
                service_ids=None if wanted is None else sorted(wanted),
                statuses=None if stored is None else sorted(stored),
                name_patterns=None if names is None else sorted(names),
                limit=query.count,
                offset=query.offset,
            )
        resources = [self.resource(s) for s in services]
        return searchset(base, resources, total=total, links=query.links(f"{base}/Endpoint", total))


def _service_id_or_none(text: str) -> str | None:
    """A resource id as a service ID; ids that are not service IDs name no service."""
    try:
        return parse_service_id(text)
    except InvalidValueError:
        return None
