"""The limit reference: a bare Litestar + asyncpg app that runs the registry's SQL and nothing else.

``python -m tests.bench.bare --port P --database-url URL`` serves, on a migrated database:

- ``GET /registry/records/{ihi}``: the ``get_records`` query (active records, each with its
  service's directory entry), answered as a ``RecordList``;
- ``PUT /registry/records/{ihi}/{serviceId}``: the ``put_record`` query, answered as a ``Record``
  with 201 or 200;
- ``POST /registry/records:batch``: a JSON array of items, sorted and de-duplicated by key,
  staged with ``COPY`` and applied by ``merge_batch`` in one transaction; answered with the counts;
- ``GET /health/ready``: 200.

The SQL is the registry's own (``sql/queries/records.sql``), the pool is opened as the registry
opens it and uvicorn serves it with the registry's settings, so what the registry adds on top
(authentication, audit, validation, logging, middleware) is the difference between the two.
Nothing here checks its input: it is a measuring stick, never a server to expose.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State

from registry.config import DatabaseSettings
from registry.db.pool import open_database
from registry.db.queries import load_queries
from schemas.records import Record, RecordList, ServiceRef
from schemas.types import RecordStatus, RecordType, SearchStyle, ServiceKind

__all__ = ("create_bare_app", "main")

_ACTIVE = [str(RecordStatus.ACTIVE)]


class _Write(msgspec.Struct):
    status: str = "active"
    type: str = "record"


class _Item(msgspec.Struct, rename="camel"):
    ihi: str
    service_id: str
    status: str = "active"
    type: str = "record"


class _BatchCounts(msgspec.Struct):
    written: int


_write_decoder = msgspec.json.Decoder(_Write)
_batch_decoder = msgspec.json.Decoder(list[_Item])


def _record(row: asyncpg.Record, service: ServiceRef | None = None) -> Record:
    return Record(
        ihi=row["ihi"],
        service_id=row["service_id"],
        status=RecordStatus(row["status"]),
        type=RecordType(row["type"]),
        last_updated=row["last_updated"],
        service=service,
    )


def _with_service(row: asyncpg.Record) -> Record:
    service = ServiceRef(
        kind=ServiceKind(row["service_kind"]),
        name=row["service_name"],
        base_url=row["service_base_url"],
        search_style=SearchStyle(row["service_search_style"]),
    )
    return _record(row, service)


@get("/registry/records/{ihi:str}")
async def get_records(state: State, ihi: str) -> RecordList:
    """The active records of one IHI."""
    async with state.db.read.acquire() as conn:
        rows = await conn.fetch(state.queries["get_records"], ihi, _ACTIVE, False)
    return RecordList(ihi=ihi, records=[_with_service(row) for row in rows])


@put("/registry/records/{ihi:str}/{service_id:str}", status_code=200)
async def put_record(state: State, request: Request[Any, Any, Any], ihi: str, service_id: str) -> Response[Record]:
    """Write one record (the registry's ``put_record``)."""
    write = _write_decoder.decode(await request.body())
    async with state.db.primary.acquire() as conn:
        row = await conn.fetchrow(
            state.queries["put_record"],
            ihi,
            service_id,
            write.status,
            write.type,
            "bench",
            service_id,
            False,
            None,
            None,
        )
    assert row is not None
    return Response(_record(row), status_code=201 if row["outcome"] == "created" else 200)


@post("/registry/records:batch", status_code=200, request_max_body_size=64 * 2**20)
async def batch(state: State, request: Request[Any, Any, Any]) -> _BatchCounts:
    """Write many records in one transaction (the registry's ``stage_batch``, ``COPY`` and ``merge_batch``)."""
    items = {(i.ihi, i.service_id): i for i in _batch_decoder.decode(await request.body())}
    staged = [(n, *key, items[key].status, items[key].type, None, None) for n, key in enumerate(sorted(items))]
    async with state.db.primary.acquire() as conn, conn.transaction():
        await conn.execute(state.queries["stage_batch"])
        await conn.copy_records_to_table("batch_input", records=staged)
        rows = await conn.fetch(state.queries["merge_batch"], "bench", staged[0][2] if staged else "", False)
    return _BatchCounts(written=len(rows))


@get("/health/ready")
async def ready() -> dict[str, str]:
    """Always ready once the lifespan has opened the pool."""
    return {"status": "ready"}


def create_bare_app(database_url: str) -> Litestar:
    """The bare app on the database at ``database_url`` (already migrated), with the registry's pool settings."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.db = await open_database(database_url, DatabaseSettings())
        try:
            yield
        finally:
            await app.state.db.close()

    return Litestar(
        route_handlers=[get_records, put_record, batch, ready],
        lifespan=[lifespan],
        state=State({"queries": load_queries()}),
        logging_config=None,
        openapi_config=None,
        debug=False,
    )


def main() -> None:
    """Serve the bare app as ``ief-registry serve`` serves the registry (one uvicorn process)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        create_bare_app(args.database_url), host="127.0.0.1", port=args.port, log_config=None, access_log=False,
        lifespan="on", server_header=False,
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
