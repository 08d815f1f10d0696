"""Paged reads: one page of rows and the count of every match, in one round trip when possible."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.db.errors import translate_db_errors

if TYPE_CHECKING:
    import asyncpg

    from registry.db.pool import Connection

__all__ = ("fetch_page",)


async def fetch_page(
    conn: Connection, query: str, *args: Any, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """Run a query whose last two parameters are ``LIMIT`` and ``OFFSET`` and whose rows carry ``total``.

    The total comes with the page (``count(*) OVER ()``); only an empty page (past the end, or
    ``limit`` 0) costs a second, one-row probe to learn it.
    """
    with translate_db_errors():
        rows = await conn.fetch(query, *args, limit, offset)
        if rows or (offset == 0 and limit > 0):
            return list(rows), (int(rows[0]["total"]) if rows else 0)
        probe = await conn.fetch(query, *args, 1, 0)
    return [], (int(probe[0]["total"]) if probe else 0)
