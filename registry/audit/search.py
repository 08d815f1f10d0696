"""AuditEvent search parameters (pure): patient, agent, date prefixes, page size, keyset cursor."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from registry import errors
from schemas.types import IHI_SYSTEM_ALIASES, InvalidValueError, parse_ihi

__all__ = (
    "EARLIEST",
    "LATEST",
    "Cursor",
    "date_bounds",
    "decode_cursor",
    "encode_cursor",
    "one_value",
    "parse_patient",
)

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
_MAX_ID = 2**63 - 1

_DATE = re.compile(
    r"(?P<prefix>[a-z]{2})?(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,6}))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_PREFIXES = frozenset({"eq", "ge", "gt", "le", "lt"})


def _invalid(message: str, parameter: str, code: errors.ErrorCode | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, parameter)], code=code)


def one_value(values: list[str] | None, parameter: str) -> str | None:
    """The single value of a parameter that takes one (None when absent).

    Raises:
        InvalidInput: the parameter is repeated or holds a comma-separated list.
    """
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise _invalid(f"{parameter} takes one value", parameter)
    return values[0]


def parse_patient(value: str) -> str:
    """The IHI named by a ``patient`` value: ``<IHI system>|<ihi>`` or a bare IHI.

    Raises:
        InvalidInput: another identifier system, or not a valid IHI.
    """
    system, bar, code = value.rpartition("|")
    if bar and system not in IHI_SYSTEM_ALIASES:
        message = f"patient is searched by IHI: the system must be {sorted(IHI_SYSTEM_ALIASES)[0]}"
        raise _invalid(message, "patient", errors.ErrorCode.INVALID_IHI)
    try:
        return parse_ihi(code)
    except InvalidValueError as exc:
        raise _invalid(f"invalid IHI: {exc}", "patient", errors.ErrorCode.INVALID_IHI) from None


def _range(value: str) -> tuple[str, datetime, datetime]:
    match = _DATE.fullmatch(value)
    if not match:
        raise _invalid(f"date {value!r} is not a FHIR date or dateTime with an optional prefix", "date")
    part = match.groupdict()
    prefix = part["prefix"] or "eq"
    if prefix not in _PREFIXES:
        raise _invalid(f"date prefix {prefix!r} is not supported; use eq, ge, gt, le or lt", "date")
    try:
        year, month, day = int(part["year"]), int(part["month"] or 1), int(part["day"] or 1)
        tz: timezone = UTC
        if part["tz"] and part["tz"] != "Z":
            sign = 1 if part["tz"][0] == "+" else -1
            hours, minutes = int(part["tz"][1:3]), int(part["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        fraction = part["fraction"] or ""
        start = datetime(
            year, month, day, int(part["hour"] or 0), int(part["minute"] or 0), int(part["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0, tzinfo=tz,
        )  # fmt: skip
    except ValueError as exc:
        raise _invalid(f"date {value!r} is not a valid date: {exc}", "date") from None
    if part["month"] is None:
        end = start.replace(year=year + 1)
    elif part["day"] is None:
        end = start.replace(year=year + month // 12, month=month % 12 + 1)
    elif part["hour"] is None:
        end = start + timedelta(days=1)
    elif part["second"] is None:
        end = start + timedelta(minutes=1)
    elif not fraction:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=10 ** (6 - len(fraction)))
    return prefix, start, end


def date_bounds(values: list[str] | None) -> tuple[datetime, datetime]:
    """The ``[since, until)`` interval of ``recorded`` that every ``date`` value allows (they are ANDed).

    A value without a prefix is ``eq``: the whole period of its precision (a day, a month…). A
    time without a zone is UTC.

    Raises:
        InvalidInput: a value that is not a date, or a prefix other than eq, ge, gt, le, lt.
    """
    since, until = EARLIEST, LATEST
    for value in values or []:
        prefix, start, end = _range(value)
        if prefix in ("eq", "ge"):
            since = max(since, start)
        if prefix == "gt":
            since = max(since, end)
        if prefix in ("eq", "le"):
            until = min(until, end)
        if prefix == "lt":
            until = min(until, start)
    return since, until


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the row ``(recorded, id)`` in newest-first order."""

    recorded: datetime
    id: int

    @classmethod
    def first(cls) -> Cursor:
        """Before every row."""
        return cls(LATEST, _MAX_ID)


def encode_cursor(cursor: Cursor) -> str:
    """An opaque ``_cursor`` value."""
    text = f"{cursor.recorded.astimezone(UTC).isoformat()}|{cursor.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor:
    """The cursor of a ``_cursor`` value (the first page when None).

    Raises:
        MalformedRequest: not a cursor this server made.
    """
    if not value:
        return Cursor.first()
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        recorded, _, row_id = text.partition("|")
        return Cursor(datetime.fromisoformat(recorded), int(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.MalformedRequest(
            "_cursor is not a paging cursor of this server", issues=[errors.Issue("bad paging cursor", "_cursor")]
        ) from None
