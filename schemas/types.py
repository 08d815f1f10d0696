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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    "ascii_int",
    "invalid_ihis",
    "is_ascii_digits",
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


def parse_hpio(value: str) -> str:
    """Validate an HPI-O (an organisation's Healthcare Provider Identifier) and return it.

    Raises:
        InvalidValueError: not 16 digits, not starting with ``800362``, or a bad check digit.
    """
    if not _DIGITS16.fullmatch(value):
        raise InvalidValueError("an HPI-O is exactly 16 decimal digits")
    if not value.startswith(HPIO_PREFIX):
        raise InvalidValueError(f"an HPI-O starts with {HPIO_PREFIX}")
    if not luhn_valid(value):
        raise InvalidValueError("the HPI-O check digit is wrong (Luhn)")
    return value


_ASCII_DIGITS = b"0123456789"
_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED_VALUES = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))
_IHI_PREFIX_BYTES = IHI_PREFIX.encode()


def invalid_ihis(values: Sequence[str]) -> list[int]:
    """The positions of the values that are not valid IHIs (as ``parse_ihi`` judges them), in order.

    A batch's IHIs are checked together: when every value is 16 ASCII digits starting with
    ``800360``, their Luhn sums are computed at once, 8 bytes per IHI in one large integer (about
    0.1 µs an IHI, where ``parse_ihi`` takes 2 µs). Otherwise each is checked on its own.
    """
    try:
        raw = "".join(values).encode("ascii")
    except UnicodeEncodeError:
        raw = b""
    count = len(values)
    if (
        not count
        or len(raw) != 16 * count
        or any(len(value) != 16 for value in values)
        or raw.translate(None, _ASCII_DIGITS)  # anything left is not an ASCII digit
        or any(raw[at::16] != bytes([digit]) * count for at, digit in enumerate(_IHI_PREFIX_BYTES))
    ):
        return [at for at, value in enumerate(values) if not _DIGITS16.fullmatch(value) or not _valid_ihi_rest(value)]
    # From the right, a 16-digit IHI's odd positions are doubled: its even indexes from the left. With every
    # value 16 long, those are the even indexes of the whole string, 8 per IHI, and the others 8 per IHI too.
    doubled, plain = raw[0::2].translate(_DOUBLED_VALUES), raw[1::2].translate(_DIGIT_VALUES)
    # Byte-wise sums (at most 18 each, so no byte carries), 8 bytes per IHI; a 64-bit word's bytes sum to the
    # word modulo 255 (256 = 1 modulo 255), and 8 bytes of at most 18 sum to less than 255.
    sums = (int.from_bytes(doubled, "little") + int.from_bytes(plain, "little")).to_bytes(8 * count, "little")
    return [at for at, word in enumerate(memoryview(sums).cast("Q")) if word % 255 % 10]


def _valid_ihi_rest(value: str) -> bool:
    return value.startswith(IHI_PREFIX) and luhn_valid(value)


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
