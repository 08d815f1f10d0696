"""What the records service needs to follow ``registry`` records: ``Referrals`` (DESIGN §5).

The records layer declares it; ``registry/server/`` injects the implementation
(``federation.resolver.Resolver``), so records never import federation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from schemas.records import Record, RecordList

__all__ = ("Referrals",)


class Referrals(Protocol):
    """Follows ``registry`` records to the registries they name (DESIGN §5).

    The records layer declares what it needs; ``registry/server/`` injects the implementation
    (``federation.resolver.Resolver``), so records never import federation.
    """

    async def follow(
        self,
        ihi: str,
        found: list[Record],
        statuses: list[str],
        *,
        request_id: str,
        deadline: float | None = None,
        requester: Requester | None = None,
    ) -> RecordList:
        """Resolve the ``registry`` records among ``found`` (this registry's own records for ``ihi``).

        ``request_id`` goes to every peer (``IEF-Request-Id``), and the requester's purpose and
        practitioner with it; ``deadline`` (a ``time.monotonic()`` instant) ends the look-up sooner
        than its own deadline would.

        Returns every ``record``-type record learned, here and at the registries reached (each with
        ``via``), and ``unresolved``: every referral that could not be followed, with the reason.
        """
        ...
