"""Member services (gateways and registries) as FHIR ``Endpoint`` resources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from schemas.fhir.canonical import CONNECTION_TYPE_SYSTEM, EXT_SEARCH_STYLE, EXT_SERVICE_KIND, RESOURCE_TYPES_SYSTEM
from schemas.types import SearchStyle, ServiceKind, ServiceStatus

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals
    from schemas.services import Service

__all__ = ("ENDPOINT_STATUS", "PAYLOAD_TYPES", "DirectoryEntry", "endpoint", "endpoint_of", "fhir_address")

ENDPOINT_STATUS: dict[ServiceStatus, str] = {ServiceStatus.ENABLED: "active", ServiceStatus.DISABLED: "off"}
"""``Endpoint.status`` of each directory status."""

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


def endpoint(canon: Canonicals, service: Service) -> dict[str, Any]:
    """A directory entry as an ``Endpoint``."""
    resource = endpoint_of(canon, service.service_id, service, status=ENDPOINT_STATUS[service.status])
    meta = {"meta": {"lastUpdated": service.updated_at}}
    return {"resourceType": "Endpoint", "id": service.service_id, **meta} | resource
