"""A ``Parameters`` body as the query parameters it stands for (FHIR R4 §3.1.0.3: an operation invoked by POST).

Every operation of the server takes its input as query parameters (GET) or as a Parameters body
(POST); this turns the body into the same ``(name, text)`` pairs, so both ways run the same code:
an ``Identifier`` or ``Coding`` becomes a token (``system|value``), a ``Reference`` its reference,
a primitive its text.
"""

from __future__ import annotations

from typing import Any

from schemas.fhir.parse import InvalidResource, Issues, load_resource

__all__ = ("read_parameters",)

_PRIMITIVES = (
    "valueString", "valueCode", "valueId", "valueUri", "valueUrl", "valueCanonical", "valueOid", "valueUuid",
    "valueMarkdown", "valueDate", "valueDateTime", "valueInstant", "valueTime", "valueInteger",
    "valuePositiveInt", "valueUnsignedInt", "valueDecimal",
)  # fmt: skip


def _token(system: Any, value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return f"{system}|{value}" if isinstance(system, str) else value


def _text(parameter: dict[str, Any]) -> str | None:
    """A parameter's value as query text; None when it has no value a query could carry."""
    for kind in _PRIMITIVES:
        if kind in parameter:
            return str(parameter[kind])
    if "valueBoolean" in parameter:
        return "true" if parameter["valueBoolean"] else "false"
    if isinstance(identifier := parameter.get("valueIdentifier"), dict):
        return _token(identifier.get("system"), identifier.get("value"))
    if isinstance(coding := parameter.get("valueCoding"), dict):
        return _token(coding.get("system"), coding.get("code"))
    if isinstance(reference := parameter.get("valueReference"), dict):
        found = reference.get("reference")
        return found if isinstance(found, str) else None
    return None


def read_parameters(body: bytes) -> list[tuple[str, str]]:
    """The parameters of a Parameters body, in order, as ``(name, text)``.

    Raises:
        NotJson: the body is not JSON.
        InvalidResource: not a valid Parameters resource, or a parameter whose value is not a primitive,
            an Identifier, a Coding or a Reference (operations here take nothing else).
    """
    data = load_resource(body, "Parameters")
    items: list[tuple[str, str]] = []
    issues: Issues = []
    for index, parameter in enumerate(data.get("parameter") or []):
        text = _text(parameter)
        if text is None:
            issues.append(
                (
                    "a parameter carries a primitive, Identifier, Coding or Reference value",
                    f"Parameters.parameter[{index}]",
                )
            )
        else:
            items.append((str(parameter["name"]), text))
    if issues:
        raise InvalidResource("the Parameters carry a value no operation here takes", issues)
    return items
