"""Where a patient's imaging is: the ``Locator`` the broker asks, and the implementation over this registry.

The broker needs, for one IHI, the services that hold data (with what the registry that holds each
record knows of them: kind, name, FHIR base URL, search style, and the chain of registries it was
learned through) and the federation hops that could not be followed. ``Locator`` is that contract;
the server injects the implementation: ``RecordsLocator``, over anything that looks up a patient's
records with ``registry`` records followed (``PatientRecords``: the registry's records service, the
federation resolver behind it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from schemas.types import RecordType, SearchStyle, ServiceKind

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from schemas.records import RecordList, Unresolved

__all__ = ("Located", "LocatedService", "Locator", "PatientRecords", "RecordsLocator")


@dataclass(frozen=True, slots=True)
class LocatedService:
    """A service that holds data for the patient, as the registry holding its record describes it.

    Attributes:
        service_id: its IEF service ID.
        kind: gateway or registry.
        name: its name.
        base_url: its FHIR base URL.
        search_style: how to phrase a patient search to it.
        chain: the registries (service IDs) it was learned through, nearest first; empty when the
            record is this registry's own.
    """

    service_id: str
    kind: ServiceKind
    name: str
    base_url: str
    search_style: SearchStyle
    chain: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Located:
    """The answer to one look-up: services holding data (those the requester may be told of), hops that
    could not be followed, and whether the privacy decision point withheld any service."""

    services: list[LocatedService]
    unresolved: list[Unresolved]
    withheld: bool = False


class Locator(Protocol):
    """Finds the services that hold data for an IHI (federation followed where the implementation can)."""

    async def locate(self, ihi: str, *, requester: Requester, request_id: str, deadline: float) -> Located:
        """The services holding data for ``ihi`` that may be disclosed to ``requester`` (the others are
        withheld and never asked), de-duplicated by service ID.

        Args:
            ihi: a valid IHI.
            requester: who the search is for (the privacy decision point decides on it).
            request_id: the consumer request's ID (peers get it as ``IEF-Request-Id``).
            deadline: when the look-up must be over, as a ``time.monotonic()`` instant.

        Raises:
            DependencyUnavailable: this registry's own records cannot be read.
        """
        ...


class PatientRecords(Protocol):
    """The look-up ``RecordsLocator`` needs: a patient's active records, ``registry`` records followed."""

    async def for_ihi(
        self,
        ihi: str,
        statuses: list[str] | None = None,
        *,
        requester: Requester,
        follow: bool = False,
        request_id: str = "",
        deadline: float | None = None,
    ) -> RecordList:
        """The records of ``ihi`` (active ones by default) that may be disclosed to ``requester``; with
        ``follow``, those learned at other registries too."""
        ...


class RecordsLocator:
    """The patient's active records here and at the registries they refer to, federation hops followed.

    Each ``record``-type record becomes a located service, described as the registry holding the
    record knows it (its directory entry there) and with the chain of registries it was learned
    through; hops that could not be followed come back as they are.
    """

    def __init__(self, records: PatientRecords) -> None:
        self._records = records

    async def locate(self, ihi: str, *, requester: Requester, request_id: str, deadline: float) -> Located:
        """The services of the patient's active records that may be disclosed to ``requester``, federation
        followed within its limits and ``deadline``."""
        found = await self._records.for_ihi(
            ihi, requester=requester, follow=True, request_id=request_id, deadline=deadline
        )
        services = [
            LocatedService(
                record.service_id,
                record.service.kind,
                record.service.name,
                record.service.base_url,
                record.service.search_style,
                tuple(record.via or ()),
            )
            for record in found.records
            if record.type is RecordType.RECORD and record.service is not None
        ]
        return Located(services, list(found.unresolved or ()), withheld=found.withheld)
