"""FHIR checks for tests: every FHIR JSON response parses with the fhir.resources R4B model of its type.

Independent of the server's own code on purpose: the server builds its responses as plain JSON,
and these checks hold it to the R4B models.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pydantic
from fhir.resources.R4B import get_fhir_model_class

__all__ = ("FHIR_JSON", "FhirResponseError", "check_fhir_response", "parse_resource")

FHIR_JSON = "application/fhir+json"


class FhirResponseError(AssertionError):
    """A response that claims to be FHIR JSON (or comes from the FHIR base) and is not valid R4B."""


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
