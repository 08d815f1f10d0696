"""Constrained scalars shared by every wire type: IHIs, service IDs, statuses.

The parsing functions here are the single definition of what a valid IHI or service ID is; every
edge (native API, FHIR facade, CLI, batch) calls them.

Every check here is a full match over ASCII characters: no surrounding whitespace, no trailing
newline (a ``$`` anchor would let one through), no digits of other scripts (``str.isdigit`` and
``\\d`` accept Arabic-Indic and full-width digits, and ``int()`` and ``uuid.UUID`` read them).
"""

from __future__ import annotations

import enum
import re
import uuid

__all__ = (
    "IHI_PREFIX",
    "IHI_SYSTEM",
    "IHI_SYSTEM_ALIASES",
    "InvalidValueError",
    "RecordStatus",
    "RecordType",
    "SearchStyle",
    "ServiceKind",
    "ServiceStatus",
    "UnresolvedReason",
    "ascii_int",
    "is_ascii_digits",
    "luhn_valid",
    "parse_ihi",
    "parse_service_id",
)

IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"
"""The official FHIR identifier system of the Individual Healthcare Identifier."""

IHI_SYSTEM_ALIASES = frozenset({IHI_SYSTEM, "http://ns.electronichealth.net.au/id/ihi/1.0"})
"""Systems accepted on input: the official URI and the spelling some JMIX tools emit."""

IHI_PREFIX = "800360"

_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}")
_DIGITS16 = re.compile(r"[0-9]{16}")


class InvalidValueError(ValueError):
    """A scalar is well-formed text but not a valid value of its kind."""


class RecordStatus(enum.StrEnum):
    """Lifecycle status of a registry record."""

    ACTIVE = "active"
    REMOVED = "removed"
    ARCHIVED = "archived"


class RecordType(enum.StrEnum):
    """What a record points at: data held by a gateway, or another registry to ask."""

    RECORD = "record"
    REGISTRY = "registry"


class ServiceKind(enum.StrEnum):
    """Kind of a member service in the services directory."""

    GATEWAY = "gateway"
    REGISTRY = "registry"


class ServiceStatus(enum.StrEnum):
    """Whether a member service may be named by records."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class SearchStyle(enum.StrEnum):
    """How the broker phrases a patient search to a gateway."""

    IEF = "ief"
    HARMONY = "harmony"


class UnresolvedReason(enum.StrEnum):
    """Why a federation hop was not followed to the end (DESIGN §5): a closed vocabulary.

    The native API's ``unresolved`` list and the FHIR OperationOutcome of ``$locate`` both use it;
    the FHIR code system ``federation-unresolved-reason`` is generated from it.
    """

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    ERROR_RESPONSE = "error-response"
    INVALID_RESPONSE = "invalid-response"
    TOO_LARGE = "too-large"
    UNAUTHORIZED = "unauthorized"
    LOOP = "loop"
    HOP_LIMIT = "hop-limit"
    BUDGET = "budget"
    DEADLINE = "deadline"
    NOT_A_MEMBER = "not-a-member"
    FAILED_RECENTLY = "failed-recently"


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the ASCII digits 0-9 and nothing else (``str.isdigit`` takes ``"²"``)."""
    return text.isascii() and text.isdigit()


def ascii_int(text: str, *, max_digits: int = 18) -> int | None:
    """The value of ``text`` when it is 1 to ``max_digits`` ASCII digits (a header's number), else None."""
    return int(text) if 0 < len(text) <= max_digits and is_ascii_digits(text) else None


def luhn_valid(digits: str) -> bool:
    """Return whether a string of decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def parse_ihi(value: str) -> str:
    """Validate an IHI and return it.

    Raises:
        InvalidValueError: not 16 digits, not starting with ``800360``, or a bad check digit.
    """
    if not _DIGITS16.fullmatch(value):
        raise InvalidValueError("an IHI is exactly 16 decimal digits")
    if not value.startswith(IHI_PREFIX):
        raise InvalidValueError(f"an IHI starts with {IHI_PREFIX}")
    if not luhn_valid(value):
        raise InvalidValueError("the IHI check digit is wrong (Luhn)")
    return value


def parse_service_id(value: str) -> str:
    """Validate a service ID (UUID or ULID) and return its canonical spelling.

    UUIDs are canonical in lower case with hyphens; ULIDs in upper-case Crockford base32.

    Raises:
        InvalidValueError: neither a UUID nor a ULID (surrounding whitespace included).
    """
    if len(value) == 26 and value.isascii():
        upper = value.upper()
        if _ULID.fullmatch(upper):
            return upper
        raise InvalidValueError("a ULID service ID is 26 Crockford base32 characters")
    if _UUID.fullmatch(value):
        return str(uuid.UUID(value))
    raise InvalidValueError("a service ID is a UUID or a ULID")
