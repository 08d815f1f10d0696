"""Member services as FHIR ``Endpoint`` resources: the FHIR rules over ``DirectoryService``. No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.fhirapi.search import SearchQuery, any_text, code_token, service_token, string_prefix
from schemas.fhir.bundle import searchset
from schemas.fhir.endpoint import ENDPOINT_STATUS, endpoint, organization, read_endpoint
from schemas.types import HPIO_SYSTEM, InvalidValueError, ServiceStatus, parse_service_id

if TYPE_CHECKING:
    from registry.directory.service import DirectoryService
    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.endpoint import EndpointClaim
    from schemas.services import Service

__all__ = ("ENDPOINT_STATUS_CODES", "EndpointResources", "OrganizationResources")

ENDPOINT_STATUS_CODES = ("active", "suspended", "error", "off", "entered-in-error", "test")
"""Every R4 ``Endpoint.status`` code; only ``active`` (enabled) and ``off`` (disabled) occur here."""

_STATUS_SYSTEM = "http://hl7.org/fhir/endpoint-status"
_DIRECTORY_STATUS: dict[str, list[str]] = {}
for _status, _fhir in ENDPOINT_STATUS.items():
    _DIRECTORY_STATUS.setdefault(_fhir, []).append(str(_status))


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

    def parse(self, body: bytes) -> EndpointClaim:
        """An Endpoint body as the directory entry it asks for."""
        return read_endpoint(body, self._canon)

    async def create(self, claim: EndpointClaim) -> tuple[Service, bool]:
        """``POST``: add the service its identifier names (or change it, as ``services add`` does).

        Raises:
            InvalidInput: the body names no service ID, or breaks a rule of the directory.
            Conflict: the service is retired.
        """
        if claim.service_id is None:
            message = "an Endpoint names its service ID in identifier (the service ID system)"
            raise errors.InvalidInput(message, issues=[errors.Issue(message, "Endpoint.identifier")])
        return await self._write(claim.service_id, claim)

    async def update(self, endpoint_id: str, claim: EndpointClaim) -> tuple[Service, bool]:
        """``PUT Endpoint/{id}``: add or change the service with this id (the operator chooses service IDs).

        Raises:
            MalformedRequest: the body names another service than the URL.
            InvalidInput: the body breaks a rule of the directory.
            Conflict: the service is retired.
        """
        service_id = _service_id_or_none(endpoint_id)
        if service_id is None or (claim.service_id is not None and claim.service_id != service_id):
            message = "the Endpoint's id and identifier must name the service ID of the URL"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, "Endpoint.id")])
        return await self._write(service_id, claim)

    async def _write(self, service_id: str, claim: EndpointClaim) -> tuple[Service, bool]:
        """Same validation as ``services add``; the credentials this registry uses for the service are kept
        unless the body names another client ID (a token file and a token endpoint are set only from the
        command line)."""
        return await self._directory.put_entry(
            service_id=service_id, kind=claim.kind, name=claim.name, base_url=claim.base_url,
            search_style=claim.search_style, client_id=claim.client_id, status=claim.status,
            organisation=claim.organisation,
        )  # fmt: skip

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
        stored = None if statuses is None else {s for c in statuses for s in _DIRECTORY_STATUS.get(c, [])}
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


class OrganizationResources:
    """Read and search the organisations behind member services (one ``Organization`` per service, same id)."""

    def __init__(self, directory: DirectoryService, canon: Canonicals) -> None:
        self._directory = directory
        self._canon = canon

    def resource(self, service: Service) -> dict[str, Any]:
        """A directory entry's organisation as an Organization."""
        return organization(self._canon, service)

    async def read(self, organization_id: str) -> Service:
        """The service whose organisation has this id (its service ID).

        Raises:
            NotFound: no service has this id.
        """
        service_id = _service_id_or_none(organization_id)
        if service_id is None:
            raise errors.NotFound("no such Organization")
        return await self._directory.get(service_id)

    async def search(self, query: SearchQuery, base: str) -> dict[str, Any]:
        """A searchset Bundle of the organisations the query selects (by _id, HPI-O identifier, name, active)."""
        ids = query.any_of({"_id": any_text})
        hpios = query.any_of({"identifier": _hpio_token})
        names = query.any_of({"name": string_prefix}, once=True)
        actives = query.any_of({"active": code_token({"true": "true", "false": "false"})})
        wanted = None if ids is None else sorted({s for s in map(_service_id_or_none, ids) if s is not None})
        statuses = None
        if actives is not None:
            statuses = sorted({str(s) for s in ServiceStatus if ("true" if s.routes else "false") in actives})
        services: list[Service] = []
        total = 0
        if wanted != [] and hpios != set() and statuses != []:
            services, total = await self._directory.search(
                service_ids=wanted, statuses=statuses, name_patterns=None if names is None else sorted(names),
                hpios=None if hpios is None else sorted(hpios), limit=query.count, offset=query.offset,
            )  # fmt: skip
        resources = [self.resource(s) for s in services]
        return searchset(base, resources, total=total, links=query.links(f"{base}/Organization", total))


def _hpio_token(name: str, text: str) -> str:
    """An HPI-O token: ``<HPI-O system>|<HPI-O>`` or a bare HPI-O."""
    system, bar, value = text.rpartition("|")
    if bar and system != HPIO_SYSTEM:
        message = f"{name} names the HPI-O system {HPIO_SYSTEM}, not {system!r}"
        raise errors.InvalidInput(message, issues=[errors.Issue(message, name)])
    return value
