"""Where a patient's imaging is: the ``Locator`` the broker asks, and the implementation over this registry.

The broker needs, for one IHI, the services that hold data (with what the registry that holds each
record knows of them: kind, name, FHIR base URL, search style, and the chain of registries it was
learned through) and the federation hops that could not be followed. ``Locator`` is that contract;
``app.py`` injects the implementation. ``LocalLocator`` answers from this registry's own active
records and directory and does not follow ``registry`` records: it reports each as unresolved.
The federation resolver (``federation/resolver.py``) follows them and takes its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from schemas.records import Unresolved
from schemas.types import RecordType, SearchStyle, ServiceKind

if TYPE_CHECKING:
    from registry.directory.service import DirectoryService
    from registry.records.service import RecordService

__all__ = ("LocalLocator", "Located", "LocatedService", "Locator")


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
    """The answer to one look-up: services holding data, and hops that could not be followed."""

    services: list[LocatedService]
    unresolved: list[Unresolved]


class Locator(Protocol):
    """Finds the services that hold data for an IHI (federation followed where the implementation can)."""

    async def locate(self, ihi: str, *, request_id: str, deadline: float) -> Located:
        """The services holding data for ``ihi``, de-duplicated by service ID.

        Args:
            ihi: a valid IHI.
            request_id: the consumer request's ID (peers get it as ``IEF-Request-Id``).
            deadline: when the look-up must be over, as a ``time.monotonic()`` instant.

        Raises:
            DependencyUnavailable: this registry's own records cannot be read.
        """
        ...


class LocalLocator:
    """This registry's active records of the patient, with the services directory's view of each service.

    ``registry`` records are not followed here: each becomes an unresolved hop.
    """

    def __init__(self, records: RecordService, directory: DirectoryService) -> None:
        self._records = records
        self._directory = directory

    async def locate(self, ihi: str, *, request_id: str, deadline: float) -> Located:
        """The services of the patient's active records (one query for the records, one for the services)."""
        found = await self._records.for_ihi(ihi)
        holders = [r.service_id for r in found.records if r.type is RecordType.RECORD]
        hops = [r.service_id for r in found.records if r.type is RecordType.REGISTRY]
        services = []
        if holders:
            known, _total = await self._directory.search(
                service_ids=holders, statuses=None, name_patterns=None, limit=len(holders), offset=0
            )
            by_id = {s.service_id: s for s in known}
            services = [
                LocatedService(s.service_id, s.kind, s.name, s.base_url, s.search_style)
                for sid in holders
                if (s := by_id.get(sid)) is not None
            ]
        reason = "registry referral not followed: federation is not enabled on this server"
        return Located(services, [Unresolved(service_id=sid, reason=reason) for sid in hops])
