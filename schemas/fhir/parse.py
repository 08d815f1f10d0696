"""Inbound FHIR JSON: decoded, checked against its resource type and parsed with the R4B models.

Errors carry one ``(message, expression)`` issue per problem, the expression FHIRPath-like
(``Basic.extension[1].valueCode``). They are plain ``ValueError``s so that this package stays free
of the server's error tree; the server translates them.

ResourceError
├── NotJson            the body is not acceptable JSON: not JSON, too deep, a repeated key (400)
└── InvalidResource    JSON, but not a valid resource of the expected type (422)
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from schemas import strictjson

__all__ = (
    "InvalidResource",
    "Issues",
    "NotJson",
    "ResourceError",
    "check_resource",
    "expression",
    "load_resource",
)

Issues = list[tuple[str, str | None]]
"""Problems found: a message and, where known, the FHIRPath-like expression it concerns."""

_SPACES = re.compile(r"\s+")
_MAX_MESSAGE = 200


class ResourceError(ValueError):
    """A request body that is not an acceptable FHIR resource."""

    def __init__(self, message: str, issues: Issues | None = None) -> None:
        super().__init__(message)
        self.issues: Issues = issues if issues else [(message, None)]


class NotJson(ResourceError):
    """The body cannot be decoded as JSON."""


class InvalidResource(ResourceError):
    """The body is JSON but not a valid resource of the expected type."""


def expression(root: str, location: tuple[int | str, ...]) -> str:
    """A FHIRPath-like expression for a location inside a resource: ``Basic.extension[1].valueCode``."""
    path = root
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Any) -> str:
    text = _SPACES.sub(" ", str(error.get("msg", "invalid value"))).strip()
    if text.startswith("Value error, "):
        text = text[len("Value error, ") :]
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def load_resource(body: bytes, resource_type: str) -> dict[str, Any]:
    """Decode a body and validate it as one resource of ``resource_type`` with the R4B models.

    Returns:
        The decoded JSON object (known to be a valid resource of that type).

    Raises:
        NotJson: the body is not JSON, is nested too deep or repeats a key (``schemas.strictjson``).
        InvalidResource: not a JSON object, another resource type, or invalid; one issue per problem.
    """
    try:
        data = strictjson.decode(body)
    except strictjson.JsonError as exc:
        raise NotJson(str(exc)) from exc  # the cause says which refusal it was
    if not isinstance(data, dict):
        raise InvalidResource(f"the body must be a {resource_type} resource (a JSON object)")
    check_resource(data, resource_type)
    return data


def check_resource(data: dict[str, Any], resource_type: str) -> None:
    """Validate a decoded JSON object as one resource of ``resource_type`` with the R4B models.

    Raises:
        InvalidResource: another resource type, or invalid; one issue per problem.
    """
    got = data.get("resourceType")
    if got != resource_type:
        message = f"expected a {resource_type} resource, got {got if isinstance(got, str) else 'no resourceType'}"
        raise InvalidResource(message, [(message, "resourceType")])
    try:
        get_fhir_model_class(resource_type).model_validate(data)
    except pydantic.ValidationError as exc:
        issues: Issues = [(_message(err), expression(resource_type, tuple(err["loc"]))) for err in exc.errors()]
        raise InvalidResource(f"the {resource_type} resource is not valid", issues) from None
