"""Checked request values: an IHI or a service ID as the error tree speaks of it.

``schemas.types`` says whether a value is valid; these turn its refusal into ``InvalidInput``
naming where the value came from (a path parameter, a search parameter, a field of a body), for
every part of the server that reads one.
"""

from __future__ import annotations

from registry import errors
from schemas.types import InvalidValueError, parse_ihi, parse_service_id

__all__ = ("check_ihi", "check_service_id")


def check_ihi(value: str, expression: str = "ihi") -> str:
    """Validate an IHI, raising ``InvalidInput`` that names where it came from."""
    try:
        return parse_ihi(value)
    except InvalidValueError as exc:
        message = f"invalid IHI: {exc}"
        raise errors.InvalidInput(
            message, issues=[errors.Issue(message, expression)], code=errors.ErrorCode.INVALID_IHI
        ) from None


def check_service_id(value: str, expression: str = "serviceId") -> str:
    """Validate and normalise a service ID, raising ``InvalidInput`` that names where it came from."""
    try:
        return parse_service_id(value)
    except InvalidValueError as exc:
        message = f"invalid service ID: {exc}"
        issues = [errors.Issue(message, expression)]
        raise errors.InvalidInput(message, issues=issues, code=errors.ErrorCode.INVALID_SERVICE_ID) from None
