"""Constrained scalars shared by every wire type: IHIs, service IDs, statuses.

The parsing functions here are the single definition of what a valid IHI or service ID is; every
edge (native API, FHIR facade, CLI, batch) calls them.
"""

from __future__ import annotations

import enum
import re
import uuid

__all__ = (
    "HPIO_PREFIX",
    "HPIO_SYSTEM",
    "IHI_PREFIX",
    "IHI_SYSTEM",
    "IHI_SYSTEM_ALIASES",
    "InvalidValueError",
    "Jurisdiction",
    "RecordChange",
    "RecordStatus",
    "RecordType",
    "SearchStyle",
    "ServiceKind",
    "ServiceStatus",
    "UnresolvedReason",
    "luhn_valid",
    "parse_hpio",
    "parse_ihi",
    "parse_service_id",
)

IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"
"""The official FHIR identifier system of the Individual Healthcare Identifier."""

IHI_SYSTEM_ALIASES = frozenset({IHI_SYSTEM, "http://ns.electronichealth.net.au/id/ihi/1.0"})
"""Systems accepted on input: the official URI and the spelling some JMIX tools emit."""

IHI_PREFIX = "800360"

HPIO_SYSTEM = "http://ns.electronichealth.net.au/id/hi/hpio/1.0"
"""The FHIR identifier system of the Healthcare Provider Identifier for Organisations (HPI-O)."""

HPIO_PREFIX = "800362"

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_DIGITS16 = re.compile(r"^[0-9]{16}$")


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


class RecordChange(enum.StrEnum):
    """What one change of a record was (a history entry's and a notification event's ``change``).

    ``updated`` is a type change that left the status as it was, and the name of every status
    change recorded before changes were told apart.
    """

    CREATED = "created"
    REGISTERED = "registered"
    STATUS_CHANGED = "status-changed"
    MOVED = "moved"
    UPDATED = "updated"


class ServiceStatus(enum.StrEnum):
    """Whether a member service may be named by records, and is routed to.

    Only an enabled service is routed (``routes``): records of a disabled or retired one are left
    out of every default answer. A retired service (``services retire``) had its records archived
    and stays retired.
    """

    ENABLED = "enabled"
    DISABLED = "disabled"
    RETIRED = "retired"

    @property
    def routes(self) -> bool:
        """Whether consumers are sent to a service with this status (the one routing rule; in SQL,
        ``routable_service()`` of migration 0009)."""
        return self is ServiceStatus.ENABLED


class Jurisdiction(enum.StrEnum):
    """Where a service is, or that it is national."""

    ACT = "ACT"
    NSW = "NSW"
    NT = "NT"
    QLD = "QLD"
    SA = "SA"
    TAS = "TAS"
    VIC = "VIC"
    WA = "WA"
    NATIONAL = "national"


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
    if not _DIGITS16.match(value):
        raise InvalidValueError("an IHI is exactly 16 decimal digits")
    if not value.startswith(IHI_PREFIX):
        raise InvalidValueError(f"an IHI starts with {IHI_PREFIX}")
    if not luhn_valid(value):
        raise InvalidValueError("the IHI check digit is wrong (Luhn)")
    return value


def parse_hpio(value: str) -> str:
    """Validate an HPI-O (an organisation's Healthcare Provider Identifier) and return it.

    Raises:
        InvalidValueError: not 16 digits, not starting with ``800362``, or a bad check digit.
    """
    text = value.strip()
    if not _DIGITS16.match(text):
        raise InvalidValueError("an HPI-O is exactly 16 decimal digits")
    if not text.startswith(HPIO_PREFIX):
        raise InvalidValueError(f"an HPI-O starts with {HPIO_PREFIX}")
    if not luhn_valid(text):
        raise InvalidValueError("the HPI-O check digit is wrong (Luhn)")
    return text


def parse_service_id(value: str) -> str:
    """Validate a service ID (UUID or ULID) and return its canonical spelling.

    UUIDs are canonical in lower case with hyphens; ULIDs in upper-case Crockford base32.

    Raises:
        InvalidValueError: neither a UUID nor a ULID.
    """
    text = value.strip()
    if len(text) == 26:
        upper = text.upper()
        if _ULID.match(upper) and upper[0] <= "7":
            return upper
        raise InvalidValueError("a ULID service ID is 26 Crockford base32 characters")
    if len(text) in (32, 36):
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    raise InvalidValueError("a service ID is a UUID or a ULID")
