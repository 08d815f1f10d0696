"""What the data costs on disk: rows and bytes of the registry's tables, and WAL written, for sizing.

``table_sizes`` reads each table's rows and its total size (heap, indexes and TOAST; for a
partitioned table, the sum over every partition) from a build's database; ``wal_position`` reads
the cluster's WAL insert position, so the WAL a phase wrote is the difference of two readings.
``docs/deployment.md`` projects a national deployment from these figures.
"""

from __future__ import annotations

import asyncpg
import msgspec

__all__ = ("SIZED_TABLES", "TableSize", "table_sizes", "wal_position")

SIZED_TABLES = ("records", "record_history", "audit_events", "audit_chain", "subscription_events")
"""The tables that grow with records and requests."""

_SIZE = """
SELECT CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END::bigint
FROM pg_class c WHERE c.oid = $1::regclass
"""


class TableSize(msgspec.Struct, kw_only=True):
    """One table of one build's database at one moment."""

    table: str
    rows: int
    bytes: int
    """Heap, indexes and TOAST, summed over the partitions of a partitioned table."""

    @property
    def bytes_per_row(self) -> float:
        """Bytes per row (0 for an empty table)."""
        return self.bytes / self.rows if self.rows else 0.0


async def table_sizes(database_url: str) -> list[TableSize]:
    """Rows and bytes of every table in ``SIZED_TABLES`` that the database has."""
    conn = await asyncpg.connect(database_url)
    try:
        sizes = []
        for table in SIZED_TABLES:
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                continue
            rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # names from SIZED_TABLES
            sizes.append(TableSize(table=table, rows=rows, bytes=int(await conn.fetchval(_SIZE, table))))
        return sizes
    finally:
        await conn.close()


async def wal_position(database_url: str) -> int:
    """The cluster's current WAL insert position, in bytes since the cluster began."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()
