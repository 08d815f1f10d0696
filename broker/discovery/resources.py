"""The broker's answers as FHIR: one page of a merged search as a searchset Bundle. No HTTP here.

Problems with gateways (and hops that could not be followed) become the issues of one
OperationOutcome entry (``search.mode = outcome``, on every page); the paging links carry the
token of a result kept for its later pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.fhir.bundle import searchset_of
from schemas.fhir.discovery import outcome_entry

if TYPE_CHECKING:
    from broker.discovery.query import DiscoveryQuery
    from broker.discovery.service import DiscoveryService
    from registry.auth.requester import Requester
    from schemas.fhir.canonical import Canonicals

__all__ = ("DiscoveryResources",)


class DiscoveryResources:
    """ImagingStudy and DocumentReference searches answered as searchset Bundles."""

    __slots__ = ("canon", "service")

    def __init__(self, service: DiscoveryService, canon: Canonicals) -> None:
        self.service = service
        self.canon = canon

    @property
    def deadline(self) -> float:
        """Seconds a search may take unless the consumer asks for less."""
        return self.service.deadline

    def budget(self, wait: int | None) -> float:
        """Seconds a search may take: the deadline, or the consumer's shorter ``Prefer: wait``."""
        return self.service.budget(wait)

    async def search(
        self, query: DiscoveryQuery, *, base: str, budget: float, request_id: str, requester: Requester
    ) -> dict[str, Any]:
        """One page of the merged result of a search for ``requester``, as a searchset Bundle (``base``:
        this FHIR base); its outcome entry says so when gateways were withheld from the requester.

        Raises:
            DependencyUnavailable: the patient's services could not be located (the database is down).
        """
        page = await self.service.search(query, budget=budget, request_id=request_id, requester=requester)
        said = page.issues or page.withheld
        entries = (
            [*page.entries, outcome_entry(self.canon, page.issues, withheld=page.withheld)] if said else page.entries
        )
        url = f"{base}/{query.kind.resource_type}"
        return searchset_of(entries, total=page.total, links=query.links(url, page.total, page.token))
