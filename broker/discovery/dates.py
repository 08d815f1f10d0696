"""FHIR date search values and date-valued elements as time ranges (pure).

A FHIR date or dateTime stands for the whole range its precision covers: ``2024`` is the year,
``2024-03-05`` the day, ``2024-03-05T10:15`` the minute. A search value is an optional prefix
(``eq`` ``ne`` ``gt`` ``lt`` ``ge`` ``le`` ``sa`` ``eb`` ``ap``) and such a value; it matches an
element by comparing the two ranges as FHIR's search page defines it. Values without a time zone
are taken as UTC.

The broker uses this to check ``started`` / ``date`` values before it passes them to gateways,
to apply them itself to the answers of gateways that cannot filter by date (Harmony style), and
to order merged results newest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ("PREFIXES", "DateCriterion", "InvalidDate", "parse_criterion", "parse_range", "sort_instant")

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

_VALUE = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)


class InvalidDate(ValueError):
    """Text that is not a FHIR date, dateTime or date search value."""


def parse_range(text: str) -> tuple[datetime, datetime]:
    """The time range ``[low, high)`` a FHIR date or dateTime covers (UTC).

    Raises:
        InvalidDate: not a date, dateTime or instant of FHIR's forms.
    """
    match = _VALUE.fullmatch(text.strip(" "))
    if not match:
        raise InvalidDate(f"{text!r} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm…)")
    year, month, day = int(match["year"]), match["month"], match["day"]
    try:
        if month is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, low.replace(year=year + 1)
        if day is None:
            low = datetime(year, int(month), 1, tzinfo=UTC)
            return low, (low + timedelta(days=32)).replace(day=1)
        if match["hour"] is None:
            low = datetime(year, int(month), int(day), tzinfo=UTC)
            return low, low + timedelta(days=1)
        low = datetime(year, int(month), int(day), int(match["hour"]), int(match["minute"]), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidDate(f"{text!r} is not a valid date: {exc}") from None
    zone = match["zone"]
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        low -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    if match["second"] is None:
        return low, low + timedelta(minutes=1)
    low += timedelta(seconds=int(match["second"]))
    fraction = match["fraction"]
    if fraction is None:
        return low, low + timedelta(seconds=1)
    digits = fraction[:6]
    low += timedelta(microseconds=int(digits.ljust(6, "0")))
    return low, low + timedelta(microseconds=10 ** (6 - len(digits)))


@dataclass(frozen=True, slots=True)
class DateCriterion:
    """One date search value: a prefix and the range of its date."""

    prefix: str
    low: datetime
    high: datetime

    def matches(self, low: datetime, high: datetime) -> bool:
        """Whether an element covering ``[low, high)`` matches, as FHIR's date search defines the prefixes.

        ``ap`` (approximately) is taken as "the ranges overlap".
        """
        contained = low >= self.low and high <= self.high
        checks = {
            "eq": contained,
            "ne": not contained,
            "gt": high > self.high,
            "lt": low < self.low,
            "ge": high > self.high or contained,
            "le": low < self.low or contained,
            "sa": low >= self.high,
            "eb": high <= self.low,
            "ap": low < self.high and high > self.low,
        }
        return checks[self.prefix]

    def matches_text(self, value: object) -> bool:
        """Whether an element's value (a FHIR date or dateTime string) matches; a missing or bad value does not."""
        if not isinstance(value, str):
            return False
        try:
            return self.matches(*parse_range(value))
        except InvalidDate:
            return False


def parse_criterion(text: str) -> DateCriterion:
    """A date search value: ``[prefix]date``.

    Raises:
        InvalidDate: an unknown prefix or not a FHIR date.
    """
    prefix = text[:2] if text[:2].isalpha() else "eq"
    value = text[2:] if text[:2].isalpha() else text
    if prefix not in PREFIXES:
        raise InvalidDate(f"unknown date prefix {prefix!r}; use one of {', '.join(PREFIXES)}")
    low, high = parse_range(value)
    return DateCriterion(prefix, low, high)


def sort_instant(value: object) -> float | None:
    """When a date-valued element begins (POSIX seconds), for ordering; None when missing or not a date."""
    if not isinstance(value, str):
        return None
    try:
        return parse_range(value)[0].timestamp()
    except InvalidDate:
        return None
