"""FHIR checks for tests: every FHIR JSON response parses with the fhir.resources R4B model of its type.

Independent of the server's own code on purpose: the server builds its responses as plain JSON,
and these checks hold it to the R4B models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pydantic
from fhir.resources.R4B import get_fhir_model_class

__all__ = (
    "BASE",
    "FHIR_JSON",
    "HPIO",
    "HPIO_SYSTEM",
    "SERVICE_SYSTEM",
    "FhirResponseError",
    "check_fhir_response",
    "endpoint_body",
    "entry_ids",
    "extension",
    "fixture",
    "parse_resource",
    "record_body",
)

FHIR_JSON = "application/fhir+json"
BASE = "https://ief-registry.org/fhir"
"""The default canonical base, written out: the published URLs are a contract."""
SERVICE_SYSTEM = f"{BASE}/sid/service-id"
DATA = Path(__file__).resolve().parent / "data"
HPIO_SYSTEM = "http://ns.electronichealth.net.au/id/hi/hpio/1.0"
HPIO = "8003621566684455"
"""An organisation's HPI-O (valid)."""
_EXAMPLE_IHI = "8003608166690503"
_EXAMPLE_SERVICE = "0f8fad5b-d9cb-469f-a165-70867728950e"


def fixture(name: str, *, ihi: str = _EXAMPLE_IHI, service_id: str = _EXAMPLE_SERVICE) -> dict[str, Any]:
    """A FHIR JSON fixture from ``tests/data``, with its example IHI and service ID replaced."""
    text = (DATA / name).read_text(encoding="utf-8")
    return msgspec.json.decode(text.replace(_EXAMPLE_IHI, ihi).replace(_EXAMPLE_SERVICE, service_id))  # type: ignore[no-any-return]


def extension(resource: dict[str, Any], name: str) -> dict[str, Any]:
    """The extension of a resource whose URL ends with ``/name``."""
    return next(ext for ext in resource.get("extension", []) if ext["url"] == f"{BASE}/StructureDefinition/{name}")


def entry_ids(bundle: dict[str, Any]) -> list[str]:
    """The ids of the resources in a Bundle, in order (none when it has no entries)."""
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def record_body(
    ihi: str, service_id: str, *, status: str = "active", type_: str = "record", record_id: str | None = None
) -> dict[str, Any]:
    """A RegistryRecord body (from ``tests/data/Basic-RegistryRecord.json``) for one record."""
    body = fixture("Basic-RegistryRecord.json", ihi=ihi, service_id=service_id)
    extension(body, "registry-record-status")["valueCode"] = status
    extension(body, "registry-record-type")["valueCode"] = type_
    if record_id is not None:
        body["id"] = record_id
    return body


class FhirResponseError(AssertionError):
    """A response that claims to be FHIR JSON (or comes from the FHIR base) and is not valid R4B."""


def endpoint_body(service_id: str, *, hpio: str = HPIO, status: str = "active", **extra: Any) -> dict[str, Any]:
    """An Endpoint the operator sends to add a gateway with its organisation."""
    return {
        "resourceType": "Endpoint",
        "contained": [
            {"resourceType": "Organization", "id": "org", "identifier": [{"system": HPIO_SYSTEM, "value": hpio}]}
        ],
        "extension": [
            {"url": f"{BASE}/StructureDefinition/endpoint-service-kind", "valueCode": "gateway"},
            {"url": f"{BASE}/StructureDefinition/endpoint-jurisdiction", "valueCode": "NSW"},
            {"url": f"{BASE}/StructureDefinition/endpoint-fallback", "valueString": "phone the practice"},
            {
                "url": f"{BASE}/StructureDefinition/endpoint-capability-statement",
                "valueUrl": "https://pacs.example.test/fhir/metadata",
            },
        ],
        "identifier": [{"system": f"{BASE}/sid/service-id", "value": service_id}],
        "status": status,
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
        },
        "name": "Harbour Radiology",
        "managingOrganization": {"reference": "#org"},
        "contact": [
            {"system": "email", "value": "pacs@harbour.example"},
            {"system": "phone", "value": "+61 2 5550 1234"},
        ],
        "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "ImagingStudy"}]}],
        "address": "https://pacs.example.test/fhir",
        **extra,
    }


def parse_resource(data: Any) -> Any:
    """Parse one resource with the R4B model its ``resourceType`` names; fail loudly otherwise."""
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirResponseError(f"not a FHIR resource: {str(data)[:200]}")
    try:
        model = get_fhir_model_class(data["resourceType"])
    except KeyError as exc:
        raise FhirResponseError(f"unknown resourceType {data['resourceType']!r}") from exc
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise FhirResponseError(f"invalid {data['resourceType']}: {exc}") from exc


async def check_fhir_response(response: httpx.Response) -> None:
    """httpx response hook: FHIR routes answer FHIR JSON, and every FHIR JSON body is a valid resource."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if response.request.url.path.startswith("/fhir") and content_type != FHIR_JSON:
        raise FhirResponseError(f"{response.request.url.path} answered {content_type!r}, not {FHIR_JSON}")
    if content_type == FHIR_JSON:
        await response.aread()
        parse_resource(msgspec.json.decode(response.content))
