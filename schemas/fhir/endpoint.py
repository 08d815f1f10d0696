"""Member services (gateways and registries) as FHIR ``Endpoint`` resources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.fhir.canonical import CONNECTION_TYPE_SYSTEM, EXT_SEARCH_STYLE, EXT_SERVICE_KIND, RESOURCE_TYPES_SYSTEM
from schemas.types import ServiceKind, ServiceStatus

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals
    from schemas.services import Service

__all__ = ("ENDPOINT_STATUS", "PAYLOAD_TYPES", "endpoint")

ENDPOINT_STATUS: dict[ServiceStatus, str] = {ServiceStatus.ENABLED: "active", ServiceStatus.DISABLED: "off"}
"""``Endpoint.status`` of each directory status."""

PAYLOAD_TYPES: dict[ServiceKind, tuple[str, ...]] = {
    ServiceKind.GATEWAY: ("ImagingStudy", "DocumentReference"),
    ServiceKind.REGISTRY: ("Basic",),
}
"""What each kind of service serves, as FHIR resource types: gateways answer the broker's
ImagingStudy and DocumentReference searches; registries answer record look-ups (RegistryRecord)."""


def endpoint(canon: Canonicals, service: Service) -> dict[str, Any]:
    """A directory entry as an ``Endpoint``: the address is the service's FHIR base URL."""
    return {
        "resourceType": "Endpoint",
        "id": service.service_id,
        "meta": {"lastUpdated": service.updated_at},
        "extension": [
            {"url": canon.extension(EXT_SERVICE_KIND), "valueCode": str(service.kind)},
            {"url": canon.extension(EXT_SEARCH_STYLE), "valueCode": str(service.search_style)},
        ],
        "identifier": [{"system": canon.service_id_system, "value": service.service_id}],
        "status": ENDPOINT_STATUS[service.status],
        "connectionType": {"system": CONNECTION_TYPE_SYSTEM, "code": "hl7-fhir-rest", "display": "HL7 FHIR"},
        "name": service.name,
        "payloadType": [
            {"coding": [{"system": RESOURCE_TYPES_SYSTEM, "code": kind}]} for kind in PAYLOAD_TYPES[service.kind]
        ],
        "payloadMimeType": ["application/fhir+json"],
        "address": service.base_url,
    }
