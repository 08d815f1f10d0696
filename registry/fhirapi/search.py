"""FHIR search parameters: FHIR's AND/OR semantics, token and reference values, paging and links.

A comma separates alternatives (OR; ``\\,`` is a literal comma). A parameter given twice, or two
parameters that name the same thing (``subject:identifier`` and ``patient``), must all hold (AND):
``Criteria.any_of`` returns the intersection, which may be empty (nothing can match).

Values that can never be valid (a bad IHI, an unknown status code, a foreign identifier system)
are refused with 422 naming the parameter; malformed paging (``_count=ten``) is 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from registry import errors
from registry.checks import check_ihi, check_service_id
from schemas.types import IHI_SYSTEM, IHI_SYSTEM_ALIASES

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

    from registry.config import FhirSettings

__all__ = (
    "PATIENT_PARAMETERS",
    "Criteria",
    "Parser",
    "SearchQuery",
    "code_token",
    "ihi_reference",
    "ihi_token",
    "service_token",
    "string_prefix",
)

T = TypeVar("T")
Parser = Callable[[str, str], T]
"""Turns one alternative of one parameter (``name``, ``text``) into a value, or raises ``InvalidInput``."""

_ALTERNATIVES = re.compile(r"(?<!\\),")
_NUMBER = re.compile(r"[0-9]{1,9}")
_PAGING = ("_count", "_offset")


def _invalid(name: str, message: str, code: errors.ErrorCode | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, name)], code=code)


def _unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def _split_token(text: str) -> tuple[str | None, str]:
    """``system|code`` as (system, code); a bare code as (None, code)."""
    system, bar, code = text.partition("|")
    return (system, code) if bar else (None, text)


def ihi_token(name: str, text: str) -> str:
    """An IHI given as a token: ``<IHI system>|<ihi>`` (any accepted system spelling) or a bare IHI."""
    system, value = _split_token(text)
    if system is not None and system not in IHI_SYSTEM_ALIASES:
        raise _invalid(
            name, f"{name} must name the IHI system {IHI_SYSTEM}, not {system!r}", errors.ErrorCode.INVALID_IHI
        )
    return check_ihi(value, name)


def ihi_reference(name: str, text: str) -> str:
    """An IHI given as a patient reference: ``<ihi>`` or ``Patient/<ihi>`` (the IHI is the patient's id)."""
    return check_ihi(text.removeprefix("Patient/"), name)


def service_token(system: str) -> Parser[str]:
    """A parser of service IDs given as tokens: ``<system>|<service id>`` or a bare service ID."""

    def parse(name: str, text: str) -> str:
        given, value = _split_token(text)
        if given is not None and given != system:
            message = f"{name} must name the service ID system {system}, not {given!r}"
            raise _invalid(name, message, errors.ErrorCode.INVALID_SERVICE_ID)
        return check_service_id(value, name)

    return parse


def code_token(codes: Mapping[str, T], system: str | None = None) -> Parser[T]:
    """A parser of codes (``code`` or ``<system>|code``) into the values ``codes`` maps them to."""

    def parse(name: str, text: str) -> T:
        given, code = _split_token(text)
        if given is not None and given != system:
            raise _invalid(name, f"{name} codes are from {system}, not {given!r}")
        if code not in codes:
            raise _invalid(name, f"unknown {name} {code!r}; use one of: {', '.join(codes)}")
        return codes[code]

    return parse


def string_prefix(name: str, text: str) -> str:
    """A FHIR string search (case-insensitive, starts with) as an ILIKE pattern."""
    if not text:
        raise _invalid(name, f"{name} needs a value")
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def any_text(_name: str, text: str) -> str:
    """A value taken as it is (a resource id)."""
    return text


PATIENT_PARAMETERS: dict[str, Parser[str]] = {
    "subject:identifier": ihi_token,
    "patient.identifier": ihi_token,
    "subject": ihi_reference,
    "patient": ihi_reference,
}
"""Every query spelling that names the patient (of a record, a study, a document), and how its value gives the IHI."""


class Criteria:
    """The query parameters of one request, read with FHIR's AND/OR semantics."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    @classmethod
    def of(cls, connection: ASGIConnection[Any, Any, Any, Any]) -> Criteria:
        """The criteria of a request, in the order sent."""
        return cls(list(connection.query_params.multi_items()))

    def any_of(self, parsers: Mapping[str, Parser[T]], *, once: bool = False) -> set[T] | None:
        """The values one criterion allows, or None when no parameter of ``parsers`` is given.

        Each occurrence of a parameter allows its comma-separated alternatives; the result is what
        every occurrence allows. With ``once``, the criterion may be given only once.

        Raises:
            MalformedRequest: ``once`` and the criterion is given more than once.
            InvalidInput: a value the parser refuses.
        """
        allowed: set[T] | None = None
        for name, value in self.items:
            parse = parsers.get(name)
            if parse is None:
                continue
            if once and allowed is not None:
                message = f"give {name} once; separate alternatives with commas"
                raise errors.MalformedRequest(message, issues=[errors.Issue(message, name)])
            alternatives = {parse(name, _unescape(part)) for part in _ALTERNATIVES.split(value)}
            allowed = alternatives if allowed is None else allowed & alternatives
        return allowed


class SearchQuery(Criteria):
    """A paged search: criteria, ``_count`` (default and maximum from settings) and ``_offset``."""

    def __init__(self, items: list[tuple[str, str]], settings: FhirSettings) -> None:
        super().__init__(items)
        count = self._number("_count")
        self.count = settings.default_count if count is None else min(count, settings.max_count)
        self.offset = self._number("_offset") or 0

    @classmethod
    def paged(cls, connection: ASGIConnection[Any, Any, Any, Any], settings: FhirSettings) -> SearchQuery:
        """The search query of a request."""
        return cls(list(connection.query_params.multi_items()), settings)

    def _number(self, name: str) -> int | None:
        values = [value for key, value in self.items if key == name]
        if not values:
            return None
        if len(values) > 1 or not _NUMBER.fullmatch(values[0]):
            message = f"{name} is one whole number, 0 or more"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, name)])
        return int(values[0])

    def links(self, url: str, total: int, carry: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
        """Bundle links for this page of ``total`` matches: self, and next/previous where they exist.

        ``carry``: paging parameters of the server's own that every link carries (replacing any sent).
        """
        own = {*_PAGING, *(name for name, _ in carry)}
        kept = [(key, value) for key, value in self.items if key not in own]

        def at(offset: int) -> str:
            paging = [("_count", str(self.count)), ("_offset", str(offset)), *carry]
            return f"{url}?{urlencode([*kept, *paging])}"

        links = [("self", at(self.offset))]
        if self.count and self.offset + self.count < total:
            links.append(("next", at(self.offset + self.count)))
        if self.count and self.offset > 0:
            links.append(("previous", at(max(0, self.offset - self.count))))
        return links
