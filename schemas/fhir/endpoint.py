"""Member services (gateways and registries) as FHIR ``Endpoint`` resources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from schemas.fhir.canonical import (
    CONNECTION_TYPE_SYSTEM,
    EXT_CAPABILITY_STATEMENT,
    EXT_CLIENT_ID,
    EXT_FALLBACK,
    EXT_JURISDICTION,
    EXT_SEARCH_STYLE,
    EXT_SERVICE_KIND,
    RESOURCE_TYPES_SYSTEM,
)
from schemas.fhir.parse import InvalidResource, Issues, load_resource
from schemas.services import Organisation
from schemas.types import (
    HPIO_SYSTEM,
    InvalidValueError,
    Jurisdiction,
    SearchStyle,
    ServiceKind,
    ServiceStatus,
    parse_service_id,
)

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals
    from schemas.services import Service

__all__ = (
    "ENDPOINT_STATUS",
    "PAYLOAD_TYPES",
    "DirectoryEntry",
    "EndpointClaim",
    "endpoint",
    "endpoint_of",
    "fhir_address",
    "organization",
    "read_endpoint",
)

ENDPOINT_STATUS: dict[ServiceStatus, str] = {
    ServiceStatus.ENABLED: "active",
    ServiceStatus.DISABLED: "off",
    ServiceStatus.RETIRED: "off",
}
"""``Endpoint.status`` of each directory status: only a routed (enabled) service is ``active``."""

PAYLOAD_TYPES: dict[ServiceKind, tuple[str, ...]] = {
    ServiceKind.GATEWAY: ("ImagingStudy", "DocumentReference"),
    ServiceKind.REGISTRY: ("Basic",),
}
"""What each kind of service serves, as FHIR resource types: gateways answer the broker's
ImagingStudy and DocumentReference searches; registries answer record look-ups (RegistryRecord)."""


def fhir_address(kind: ServiceKind, base_url: str) -> str:
    """A service's FHIR base: a gateway's base URL is its FHIR base; a registry's is the root of its API."""
    return f"{base_url}/fhir" if kind is ServiceKind.REGISTRY else base_url


class DirectoryEntry(Protocol):
    """What an Endpoint is made of: a directory entry here (``Service``) or at a peer (``ServiceRef``)."""

    @property
    def kind(self) -> ServiceKind: ...

    @property
    def name(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def search_style(self) -> SearchStyle: ...


def endpoint_of(
    canon: Canonicals,
    service_id: str,
    entry: DirectoryEntry,
    *,
    status: str = "active",
    extensions: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """An ``Endpoint`` for a service; ``address`` is its FHIR base (DESIGN §4.2)."""
    return {
        "resourceType": "Endpoint",
        "id": service_id,
        "extension": [
            {"url": canon.extension(EXT_SERVICE_KIND), "valueCode": str(entry.kind)},
            {"url": canon.extension(EXT_SEARCH_STYLE), "valueCode": str(entry.search_style)},
            *extensions,
        ],
        "identifier": [{"system": canon.service_id_system, "value": service_id}],
        "status": status,
        "connectionType": {"system": CONNECTION_TYPE_SYSTEM, "code": "hl7-fhir-rest", "display": "HL7 FHIR"},
        "name": entry.name,
        "payloadType": [
            {"coding": [{"system": RESOURCE_TYPES_SYSTEM, "code": code}]} for code in PAYLOAD_TYPES[entry.kind]
        ],
        "payloadMimeType": ["application/fhir+json"],
        "address": fhir_address(entry.kind, entry.base_url),
    }


def _telecom(o: Organisation) -> list[dict[str, str]]:
    found = [("email", o.contact_email), ("phone", o.contact_phone)]
    return [{"system": system, "value": value} for system, value in found if value]


def endpoint(canon: Canonicals, service: Service) -> dict[str, Any]:
    """A directory entry as an ``Endpoint``: its organisation (served as ``Organization/{id}``), contact,
    jurisdiction, capability statement and fallback."""
    o = service.organisation
    described = [
        (EXT_JURISDICTION, "valueCode", o.jurisdiction),
        (EXT_CAPABILITY_STATEMENT, "valueUrl", o.capability_statement_url),
        (EXT_FALLBACK, "valueString", o.fallback),
    ]
    extensions = tuple({"url": canon.extension(url), kind: str(value)} for url, kind, value in described if value)
    resource = endpoint_of(
        canon, service.service_id, service, status=ENDPOINT_STATUS[service.status], extensions=extensions
    )
    resource["managingOrganization"] = {"reference": f"Organization/{service.service_id}", "display": service.name}
    if _telecom(o):
        resource["contact"] = _telecom(o)
    meta = {"meta": {"lastUpdated": service.updated_at}}
    return {"resourceType": "Endpoint", "id": service.service_id, **meta} | resource


def organization(canon: Canonicals, service: Service) -> dict[str, Any]:
    """The organisation behind a member service, as an ``Organization`` with the service's id."""
    o = service.organisation
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": service.service_id,
        "meta": {"lastUpdated": service.updated_at},
        "active": service.status.routes,
        "name": service.name,
        "endpoint": [{"reference": f"Endpoint/{service.service_id}"}],
    }
    if o.hpio:
        resource["identifier"] = [{"system": HPIO_SYSTEM, "value": o.hpio}]
    if _telecom(o):
        resource["telecom"] = _telecom(o)
    if o.jurisdiction and o.jurisdiction is not Jurisdiction.NATIONAL:
        resource["address"] = [{"state": str(o.jurisdiction), "country": "AU"}]
    del canon
    return resource


@dataclass(frozen=True, slots=True)
class EndpointClaim:
    """What an Endpoint body asks the directory to hold (validated by the directory's own rules afterwards)."""

    service_id: str | None
    kind: str
    name: str
    base_url: str
    search_style: str
    status: ServiceStatus
    organisation: Organisation
    client_id: str | None


class _EndpointReader:
    def __init__(self, canon: Canonicals, data: dict[str, Any]) -> None:
        self.canon = canon
        self.data = data
        self.issues: Issues = []
        self.values: dict[str, str] = {}

    def problem(self, message: str, where: str) -> None:
        self.issues.append((message, where))

    def extensions(self) -> None:
        known = {
            self.canon.extension(EXT_SERVICE_KIND): ("kind", "valueCode"),
            self.canon.extension(EXT_SEARCH_STYLE): ("search_style", "valueCode"),
            self.canon.extension(EXT_JURISDICTION): ("jurisdiction", "valueCode"),
            self.canon.extension(EXT_CAPABILITY_STATEMENT): ("capability_statement_url", "valueUrl"),
            self.canon.extension(EXT_FALLBACK): ("fallback", "valueString"),
            self.canon.extension(EXT_CLIENT_ID): ("client_id", "valueString"),
        }
        for index, ext in enumerate(self.data.get("extension") or []):
            where = f"Endpoint.extension[{index}]"
            name, value_type = known.get(ext.get("url"), (None, ""))
            if name is None:
                self.problem(f"unknown extension {ext.get('url')!r}", f"{where}.url")
            elif not isinstance(ext.get(value_type), str):
                self.problem(f"this extension carries {value_type}", where)
            else:
                self.values[name] = ext[value_type]

    def service_id(self) -> str | None:
        found = [
            i.get("value") for i in self.data.get("identifier") or [] if i.get("system") == self.canon.service_id_system
        ]
        named = found[0] if found else self.data.get("id")
        if named is None:
            return None
        try:
            return parse_service_id(named)
        except InvalidValueError as exc:
            self.problem(f"invalid service ID: {exc}", "Endpoint.identifier")
            return None

    def hpio(self) -> str | None:
        """The HPI-O of a contained Organization that managingOrganization references."""
        reference = (self.data.get("managingOrganization") or {}).get("reference")
        if reference is None or not reference.startswith("#"):
            return None
        for contained in self.data.get("contained") or []:
            if contained.get("resourceType") == "Organization" and contained.get("id") == reference[1:]:
                for identifier in contained.get("identifier") or []:
                    if identifier.get("system") == HPIO_SYSTEM:
                        return str(identifier.get("value"))
        return None

    def contact(self) -> tuple[str | None, str | None]:
        email = phone = None
        for point in self.data.get("contact") or []:
            if point.get("system") == "email":
                email = point.get("value")
            elif point.get("system") == "phone":
                phone = point.get("value")
        return email, phone


def read_endpoint(body: bytes, canon: Canonicals) -> EndpointClaim:
    """Parse an ``Endpoint`` body the operator sends to add or change a member service.

    The service kind is the ``endpoint-service-kind`` extension; the address is the service's FHIR
    base (a registry's is its API root followed by ``/fhir``); ``status`` is ``active`` (enabled) or
    ``off`` (disabled); the organisation's HPI-O is the identifier of a contained ``Organization``
    that ``managingOrganization`` references.

    Raises:
        NotJson: the body is not JSON.
        InvalidResource: not a valid Endpoint, or one this directory cannot hold; one issue per problem.
    """
    data = load_resource(body, "Endpoint")
    reader = _EndpointReader(canon, data)
    reader.extensions()
    kind = reader.values.get("kind")
    if kind not in ServiceKind._value2member_map_:
        reader.problem("the endpoint-service-kind extension (gateway or registry) is required", "Endpoint.extension")
    status = {"active": ServiceStatus.ENABLED, "off": ServiceStatus.DISABLED}.get(str(data.get("status")))
    if status is None:
        reader.problem("an Endpoint of this directory is active (enabled) or off (disabled)", "Endpoint.status")
    if not data.get("name"):
        reader.problem("a member service has a name", "Endpoint.name")
    service_id = reader.service_id()
    jurisdiction = reader.values.get("jurisdiction")
    if jurisdiction is not None and jurisdiction not in Jurisdiction._value2member_map_:
        reader.problem(f"unknown jurisdiction {jurisdiction!r}", "Endpoint.extension")
    if reader.issues or kind is None or status is None:
        raise InvalidResource("the Endpoint is not one this directory can hold", reader.issues)
    address = str(data.get("address", "")).rstrip("/")
    if kind == ServiceKind.REGISTRY:
        address = address.removesuffix("/fhir")
    email, phone = reader.contact()
    organisation = Organisation(
        hpio=reader.hpio(), jurisdiction=Jurisdiction(jurisdiction) if jurisdiction else None, contact_email=email,
        contact_phone=phone, capability_statement_url=reader.values.get("capability_statement_url"),
        fallback=reader.values.get("fallback"),
    )  # fmt: skip
    return EndpointClaim(
        service_id=service_id, kind=kind, name=str(data["name"]), base_url=address,
        search_style=reader.values.get("search_style", str(SearchStyle.IEF)), status=status,
        organisation=organisation, client_id=reader.values.get("client_id"),
    )  # fmt: skip
