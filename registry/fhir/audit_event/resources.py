"""The audit trail as FHIR ``AuditEvent`` resources: the FHIR side of ``AuditService``. No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from schemas.fhir.audit import audit_event, audit_searchset

if TYPE_CHECKING:
    from registry.audit.service import AuditQuery, AuditService

__all__ = ("AuditEventResources",)


class AuditEventResources:
    """Search and read the audit trail as AuditEvents (``canonical_base``: where the IEF code systems live)."""

    __slots__ = ("audit", "canonical_base")

    def __init__(self, audit: AuditService, canonical_base: str) -> None:
        self.audit = audit
        self.canonical_base = canonical_base

    async def search(self, query: AuditQuery, *, base: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """A searchset Bundle of one page, newest first, with ``self`` and ``next`` links (``base``: this FHIR
        base; ``params``: the request's query, whose ``_cursor`` the links replace)."""
        page = await self.audit.search(query)
        kept = [(name, value) for name, value in params if name != "_cursor"]

        def page_url(cursor: str | None) -> str:
            paging = [*kept, ("_cursor", cursor)] if cursor else kept
            return f"{base}/AuditEvent" + (f"?{urlencode(paging)}" if paging else "")

        return audit_searchset(
            page.events,
            canonical_base=self.canonical_base,
            resource_base=base,
            self_url=page_url(query.cursor),
            next_url=page_url(page.next_cursor) if page.next_cursor else None,
        )

    async def read(self, event_id: str) -> dict[str, Any]:
        """One AuditEvent by id.

        Raises:
            NotFound: no such AuditEvent.
        """
        return audit_event(await self.audit.read(event_id), canonical_base=self.canonical_base)
