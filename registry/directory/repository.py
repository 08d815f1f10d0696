"""Storage of the services directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.db.errors import translate_db_errors
from registry.db.paging import fetch_page
from schemas.services import Service
from schemas.types import SearchStyle, ServiceKind, ServiceStatus

if TYPE_CHECKING:
    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries

__all__ = ("ServiceRepository",)


def _service(row: asyncpg.Record) -> Service:
    return Service(
        service_id=row["service_id"],
        kind=ServiceKind(row["kind"]),
        name=row["name"],
        base_url=row["base_url"],
        search_style=SearchStyle(row["search_style"]),
        status=ServiceStatus(row["status"]),
        client_id=row["client_id"],
        bearer_token_file=row["bearer_token_file"],
        token_endpoint=row["token_endpoint"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ServiceRepository:
    """The only caller of ``sql/queries/services.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def add(
        self,
        conn: Connection,
        *,
        service_id: str,
        kind: str,
        name: str,
        base_url: str,
        search_style: str,
        client_id: str | None = None,
        bearer_token_file: str | None = None,
        token_endpoint: str | None = None,
    ) -> tuple[Service, bool]:
        """Add or change a service (enabling it); return it and whether it is new."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["add_service"], service_id, kind, name, base_url, search_style, client_id, bearer_token_file,
                token_endpoint,
            )  # fmt: skip
        assert row is not None
        return _service(row), bool(row["created"])

    async def list_all(self, conn: Connection, status: str | None = None) -> list[Service]:
        """Every service, optionally only those with one status."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["list_services"], status)
        return [_service(row) for row in rows]

    async def get(self, conn: Connection, service_id: str) -> Service | None:
        """One service, or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_service"], service_id)
        return _service(row) if row else None

    async def get_many(self, conn: Connection, service_ids: list[str]) -> list[Service]:
        """The services among ``service_ids`` (unknown IDs are left out)."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_services"], service_ids)
        return [_service(row) for row in rows]

    async def set_status(self, conn: Connection, service_id: str, status: str) -> Service | None:
        """Enable or disable a service; None when it does not exist."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["set_service_status"], service_id, status)
        return _service(row) if row else None

    async def search(
        self,
        conn: Connection,
        *,
        service_ids: list[str] | None,
        statuses: list[str] | None,
        name_patterns: list[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Service], int]:
        """A page of services matching the filters (None: any), and the count of every match.

        ``name_patterns`` are ILIKE patterns (the caller escapes them); a name matching any is a match.
        """
        rows, total = await fetch_page(
            conn, self._q["search_services"], service_ids, statuses, name_patterns, limit=limit, offset=offset
        )
        return [_service(row) for row in rows], total
