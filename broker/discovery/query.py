"""A consumer's discovery search, read and checked: which resource, which patient, what is passed on.

``SearchKind`` says what differs between the two searches the broker serves (ImagingStudy and
DocumentReference): the scope, the filters passed through to gateways, the date element.
``DiscoveryQuery`` is one request's search: the patient (exactly one IHI), the filters as sent
(checked, then passed through verbatim), ``_count``/``_offset`` and the page token, and the
parameters a gateway gets in each search style.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from broker.discovery.dates import DateCriterion, InvalidDate, parse_criterion
from registry import errors
from registry.fhirapi.search import PATIENT_PARAMETERS, SearchQuery
from schemas.types import IHI_SYSTEM, SearchStyle

__all__ = ("DOCUMENT_REFERENCE", "IMAGING_STUDY", "PAGE_TOKEN", "DiscoveryQuery", "SearchKind")

PAGE_TOKEN = "_page_token"  # noqa: S105 - a query parameter's name, not a secret
"""Query parameter naming a merged result kept for paging (the Bundle links carry it)."""

_ALTERNATIVES = re.compile(r"(?<!\\),")
_CODE = re.compile(r"[\x21-\x7b\x7d\x7e]+")
_SYSTEM = re.compile(r"[\x21-\x7b\x7d\x7e]*")


@dataclass(frozen=True, slots=True)
class SearchKind:
    """One resource type the broker searches gateways for.

    Attributes:
        resource_type: ``ImagingStudy`` or ``DocumentReference``.
        scope: what a consumer needs, and what the broker asks gateways' token endpoints for.
        date_param: the date search parameter (checked; applied by the broker itself to answers of
            gateways that cannot filter by it).
        token_params: token search parameters passed through to every gateway.
        date_element: the element that orders results newest first.
    """

    resource_type: str
    scope: str
    date_param: str
    token_params: tuple[str, ...]
    date_element: str

    @property
    def filters(self) -> tuple[str, ...]:
        """Every filter parameter the search takes (besides the patient and paging)."""
        return (*self.token_params, self.date_param)


IMAGING_STUDY = SearchKind("ImagingStudy", "system/ImagingStudy.rs", "started", ("modality",), "started")
DOCUMENT_REFERENCE = SearchKind("DocumentReference", "system/DocumentReference.rs", "date", (), "date")


def _invalid(name: str, message: str) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, name)])


def _alternatives(value: str) -> list[str]:
    return _ALTERNATIVES.split(value)


@dataclass(frozen=True, slots=True)
class DiscoveryQuery:
    """One consumer search, checked.

    Attributes:
        kind: what is searched.
        ihi: the patient; None when the patient criteria contradict each other (nothing can match).
        filters: the filter parameters as sent, in order (passed through verbatim).
        dates: the date criteria: every group must hold, one criterion of a group is enough.
        count: ``_count`` as sent (capped), passed to gateways; None when absent.
        page_token: the merged result this page is read from, if the link carried one.
        search: the request's parameters read as a FHIR search (page size, offset, links).
    """

    kind: SearchKind
    ihi: str | None
    filters: tuple[tuple[str, str], ...]
    dates: tuple[tuple[DateCriterion, ...], ...]
    count: int | None
    page_token: str | None
    search: SearchQuery

    @property
    def page_size(self) -> int:
        """The size of the broker's pages (``_count``, or the default)."""
        return self.search.count

    @property
    def offset(self) -> int:
        """The first match of the page asked for."""
        return self.search.offset

    @classmethod
    def parse(cls, kind: SearchKind, search: SearchQuery) -> DiscoveryQuery:
        """Check a request's parameters (the route has already refused unknown ones).

        Raises:
            MalformedRequest: no patient, more than one patient, or malformed paging.
            InvalidInput: a bad IHI, modality or date.
        """
        ihis = search.any_of(PATIENT_PARAMETERS)
        if ihis is None:
            message = (
                "a broker search names the patient: patient.identifier=<IHI system>|<IHI> "
                "(or subject:identifier, patient)"
            )
            raise errors.MalformedRequest(message)
        if len(ihis) > 1:
            raise errors.MalformedRequest("a broker search names exactly one patient")
        filters: list[tuple[str, str]] = []
        dates: list[tuple[DateCriterion, ...]] = []
        for name, value in search.items:
            if name in kind.token_params:
                for code in _alternatives(value):
                    system, _bar, token = code.rpartition("|")
                    if not _CODE.fullmatch(token) or not _SYSTEM.fullmatch(system):
                        raise _invalid(name, f"{name} takes codes: <code> or <system>|<code>, not {code!r}")
                filters.append((name, value))
            elif name == kind.date_param:
                try:
                    dates.append(tuple(parse_criterion(part) for part in _alternatives(value)))
                except InvalidDate as exc:
                    raise _invalid(name, f"{name}: {exc}") from None
                filters.append((name, value))
        page_tokens = [value for name, value in search.items if name == PAGE_TOKEN]
        if len(page_tokens) > 1:
            raise errors.MalformedRequest(f"give {PAGE_TOKEN} once", issues=[errors.Issue("given twice", PAGE_TOKEN)])
        given_count = any(name == "_count" for name, _ in search.items)
        return cls(
            kind=kind,
            ihi=next(iter(ihis), None),
            filters=tuple(filters),
            dates=tuple(dates),
            count=search.count if given_count else None,
            page_token=page_tokens[0] if page_tokens else None,
            search=search,
        )

    @property
    def key(self) -> Hashable:
        """What makes two searches identical: same resource type, patient, filters and ``_count``."""
        return (self.kind.resource_type, self.ihi, tuple(sorted(self.filters)), self.count)

    def gateway_params(self, style: SearchStyle) -> tuple[tuple[str, str], ...]:
        """The query a gateway of ``style`` gets.

        IEF style: ``patient.identifier=<IHI system>|<IHI>``, every filter and ``_count``. Harmony
        style: ``patient=<IHI>`` and the token filters (it knows ``modality``); no date filter
        (the broker applies it to the answer) and no ``_count`` (it does not page).
        """
        assert self.ihi is not None
        if style is SearchStyle.HARMONY:
            return (("patient", self.ihi), *((n, v) for n, v in self.filters if n in self.kind.token_params))
        # _count=0 asks for the total only: the broker needs the entries to merge them
        count = (("_count", str(self.count)),) if self.count else ()
        return (("patient.identifier", f"{IHI_SYSTEM}|{self.ihi}"), *self.filters, *count)

    def dates_match(self, resource: dict[str, Any]) -> bool:
        """Whether a resource meets the date criteria (for answers of gateways that do not filter by date)."""
        value = resource.get(self.kind.date_element)
        return all(any(criterion.matches_text(value) for criterion in group) for group in self.dates)

    def links(self, url: str, total: int, token: str | None) -> list[tuple[str, str]]:
        """Bundle links of this page of ``total`` matches: self, and next/previous (carrying ``token``)."""
        return self.search.links(url, total, ((PAGE_TOKEN, token),) if token else ())
