"""The audit trail over real HTTP on a real PostgreSQL: refusals, group commit, atomicity, immutability, sealing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from registry.audit.chain import seal
from registry.audit.repository import AuditRepository
from registry.audit.verify import verify
from registry.audit.writer import AuditUnavailable, AuditWriter
from registry.config import AuditSettings, LogSettings, RecordSettings, Settings
from registry.db.pool import open_database
from registry.db.queries import load_queries
from tests.audit_ledger import AuditLedger
from tests.audit_months import instance_signer
from tests.factories import make_audit_entry, make_ihi, make_service_id, with_bad_check_digit
from tests.pg import TestCluster
from tests.server import RunningServer, running_server


async def _rows(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _row_of(database_url: str, response: httpx.Response) -> asyncpg.Record:
    rows = await _rows(
        database_url, "SELECT * FROM audit_events WHERE request_id = $1", response.headers["x-request-id"]
    )
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
async def fresh(template: TestCluster) -> str:
    """A migrated database of the test's own (for tests that change its schema or need an empty trail)."""
    return await template.new_database()


async def test_refusals_on_patient_routes_are_audited(
    client: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """422, 400, 415, 413 and 404 on patient-linked routes each leave one failure row with their status."""
    ihi = make_ihi()
    too_big = b"{" + b" " * server.settings.http.max_body_bytes + b"}"
    text, json = {"content-type": "text/plain"}, {"content-type": "application/json"}
    responses = [
        await client.get(f"/registry/records/{with_bad_check_digit(ihi)}"),
        await client.get(f"/registry/records/{ihi}", params={"colour": "red"}),
        await client.put(f"/registry/records/{ihi}/{gateway}", content=b"active", headers=text),
        await client.put(f"/registry/records/{ihi}/{gateway}", content=too_big, headers=json),
        await client.put(f"/registry/records/{ihi}/{make_service_id()}", json={"status": "active"}),
        await client.get(f"/fhir/AuditEvent/{uuid.uuid4()}"),
    ]  # fmt: skip
    assert [r.status_code for r in responses] == [422, 400, 415, 413, 422, 404]
    rows = [await _row_of(server.database_url, r) for r in responses]
    assert [(row["status"], row["outcome"]) for row in rows] == [
        (422, 4), (400, 4), (415, 4), (413, 4), (422, 4), (404, 4),
    ]  # fmt: skip
    assert [row["patients"] for row in rows] == [[], [ihi], [ihi], [ihi], [ihi], []]
    assert [row["interaction"] for row in rows] == ["search-type"] * 2 + ["update"] * 3 + ["read"]
    assert "check digit" in rows[0]["detail"]
    assert rows[4]["records"] == []


async def test_writes_and_reads_record_their_records(
    client: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """Each write's row states its outcome (created C, updated or unchanged U) and the record; so does a look-up."""
    ihi = make_ihi()
    created = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    changed = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "archived"})
    same = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "archived"})
    listed = await client.get(f"/registry/records/{ihi}", params={"status": "archived"})
    record_id = (await _rows(server.database_url, "SELECT record_id FROM records WHERE ihi = $1", ihi))[0][0]
    rows = [await _row_of(server.database_url, r) for r in (created, changed, same, listed)]
    assert [(row["action"], row["status"], row["detail"]) for row in rows] == [
        ("C", 201, "created"), ("U", 200, "updated"), ("U", 200, "unchanged"), ("E", 200, None),
    ]  # fmt: skip
    assert [row["patients"] for row in rows] == [[ihi]] * 4
    assert all(row["records"] == [record_id] for row in rows)


async def test_concurrent_reads_share_inserts_and_precede_their_responses(
    clients: Callable[..., httpx.AsyncClient], client: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """100 concurrent reads leave 100 rows from fewer than 100 inserts, each committed before its response arrives."""
    ihi = make_ihi()
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    pool = await asyncpg.create_pool(server.database_url, min_size=1, max_size=20)
    assert pool is not None
    not_yet_visible: list[str] = []

    async def row_is_visible(response: httpx.Response) -> None:
        rid = response.headers["x-request-id"]
        if await pool.fetchval("SELECT count(*) FROM audit_events WHERE request_id = $1", rid) != 1:
            not_yet_visible.append(rid)

    try:
        async with clients(limits=httpx.Limits(max_connections=100), timeout=60) as wide:
            wide.event_hooks["response"].append(row_is_visible)
            responses = await asyncio.gather(*(wide.get(f"/registry/records/{ihi}") for _ in range(100)))
        ids = [r.headers["x-request-id"] for r in responses]
        inserts = await pool.fetchval(
            "SELECT count(DISTINCT xid) FROM audit_events WHERE request_id = ANY($1::text[])", ids
        )
        rows = await pool.fetchval("SELECT count(*) FROM audit_events WHERE request_id = ANY($1::text[])", ids)
    finally:
        await pool.close()
    assert all(r.status_code == 200 for r in responses)
    assert not_yet_visible == []
    assert rows == 100
    assert inserts < 100


async def test_a_write_whose_audit_row_fails_changes_nothing(fresh: str) -> None:
    """When a write's success row cannot be inserted, the write rolls back and the only row records the failure."""
    conn = await asyncpg.connect(fresh)
    try:
        await conn.execute(
            "ALTER TABLE audit_events ADD CONSTRAINT refuse_successful_writes "
            "CHECK (outcome <> 0 OR interaction NOT IN ('update', 'batch'))"
        )
    finally:
        await conn.close()
    settings = Settings(log=LogSettings(access=False), records=RecordSettings(batch_chunk_size=100))
    ihi, batch = make_ihi(), [make_ihi() for _ in range(250)]
    async with running_server(settings, fresh, make_service_id()) as server:
        gateway = make_service_id()
        await server.add_service(gateway)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=await server.headers()) as http:
            put = await http.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
            bulk = await http.post("/registry/records:batch", json=[{"ihi": i, "serviceId": gateway} for i in batch])
        assert (put.status_code, bulk.status_code) == (500, 500)
        assert await _rows(fresh, "SELECT 1 FROM records") == []
        assert await _rows(fresh, "SELECT 1 FROM record_history") == []
        rows = [await _row_of(fresh, r) for r in (put, bulk)]
    assert [(row["status"], row["outcome"], row["records"]) for row in rows] == [(500, 8, []), (500, 8, [])]


async def test_a_read_whose_audit_row_cannot_be_written_is_not_answered(fresh: str) -> None:
    """If a look-up's row cannot be written, the caller gets a 503 OperationOutcome and none of the data."""
    conn = await asyncpg.connect(fresh)
    try:
        await conn.execute(
            "ALTER TABLE audit_events ADD CONSTRAINT refuse_searches CHECK (interaction <> 'search-type')"
        )
    finally:
        await conn.close()
    ihi, gateway = make_ihi(), make_service_id()
    async with running_server(Settings(log=LogSettings(access=False)), fresh, make_service_id()) as server:
        await server.add_service(gateway)
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as http:
            assert (await http.put(f"/registry/records/{ihi}/{gateway}", json={})).status_code == 201
            refused = await http.get(f"/registry/records/{ihi}")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/fhir+json"
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert gateway not in refused.text
    assert len(refused.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET status = 200",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events CASCADE",
        "UPDATE audit_chain SET hash = hash",
        "DELETE FROM audit_chain",
        "TRUNCATE audit_chain",
    ],
)
async def test_audit_tables_refuse_change(client: httpx.AsyncClient, server: RunningServer, statement: str) -> None:
    """UPDATE, DELETE and TRUNCATE on the audit tables fail for the application's own role."""
    await client.get(f"/registry/records/{make_ihi()}")
    for _ in range(200):  # the chain gets its rows within a few seal intervals
        if await _rows(server.database_url, "SELECT 1 FROM audit_chain LIMIT 1"):
            break
        await asyncio.sleep(0.05)
    conn = await asyncpg.connect(server.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not allowed"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_sealer_waits_for_a_late_committing_transaction(fresh: str) -> None:
    """A row of a long transaction that commits after newer rows is sealed before them, never skipped."""
    repo = AuditRepository(load_queries())
    late, early, sealer = [await asyncpg.connect(fresh) for _ in range(3)]
    try:
        async with instance_signer(fresh) as signer:
            while (await seal(sealer, repo, signer)).checkpointed:
                pass  # last month, empty, is sealed first
            transaction = late.transaction()
            await transaction.start()
            await repo.insert(late, [make_audit_entry("late")])
            await repo.insert(early, [make_audit_entry("early")])
            while_open = await seal(sealer, repo, signer)
            await transaction.commit()
            after_commit = await seal(sealer, repo, signer)
        order = await sealer.fetch(
            "SELECT e.request_id FROM audit_chain c JOIN audit_events e ON e.id = c.audit_id ORDER BY c.seq"
        )
        verdict = await verify(sealer, repo)
    finally:
        for conn in (late, early, sealer):
            await conn.close()
    assert (while_open.sealed, while_open.more) == (0, True)
    assert (after_commit.sealed, after_commit.more) == (2, False)
    assert [row["request_id"] for row in order] == ["late", "early"]
    assert (verdict.ok, verdict.rows, verdict.pending) == (True, 2, 0)


async def test_the_server_seals_what_it_writes(fresh: str) -> None:
    """A running server appends its rows to the chain on its own, and the chain verifies."""
    settings = Settings(log=LogSettings(access=False), audit=AuditSettings(seal_interval_ms=20))
    async with running_server(settings, fresh, make_service_id()) as server:
        ledger = AuditLedger(server.audited)
        async with httpx.AsyncClient(
            base_url=server.base_url, event_hooks=ledger.hooks(), headers=await server.headers()
        ) as http:
            await asyncio.gather(*(http.get(f"/registry/records/{make_ihi()}") for _ in range(20)))
        await ledger.check(fresh)
        for _ in range(250):
            if len(await _rows(fresh, "SELECT 1 FROM audit_chain")) == 20:
                break
            await asyncio.sleep(0.02)
    conn = await asyncpg.connect(fresh)
    try:
        verdict = await verify(conn, AuditRepository(load_queries()))
    finally:
        await conn.close()
    assert (verdict.ok, verdict.rows, verdict.pending) == (True, 20, 0)


async def test_ledger_names_a_request_without_its_row(server: RunningServer) -> None:
    """The suite-wide check fails, naming the request, when a patient-linked request has no audit row."""
    ledger = AuditLedger(server.audited)
    ihi = make_ihi()
    assert ledger.patient_linked("GET", f"/registry/records/{ihi}")
    assert ledger.patient_linked("POST", "/registry/records:batch")
    assert not ledger.patient_linked("GET", "/health/live")
    assert ledger.patient_linked("DELETE", f"/registry/records/{ihi}", 405)
    ledger.answered.append(("GET", f"/registry/records/{ihi}", "never-sent", 200))
    with pytest.raises(AssertionError, match="never-sent\\): 0 audit rows, expected 1"):
        await ledger.check(server.database_url)


async def test_one_sealer_at_a_time(fresh: str) -> None:
    """While one process holds the sealer lock another's run does nothing; once it is released the rows are sealed."""
    repo = AuditRepository(load_queries())
    holder, other = [await asyncpg.connect(fresh) for _ in range(2)]
    try:
        async with instance_signer(fresh) as signer:
            while (await seal(other, repo, signer)).checkpointed:
                pass  # last month, empty, is sealed first
            await repo.insert(other, [make_audit_entry() for _ in range(3)])
            transaction = holder.transaction()
            await transaction.start()
            assert await repo.lock_sealer(holder, wait=False)
            blocked = await seal(other, repo, signer)
            await transaction.rollback()
            sealed = await seal(other, repo, signer)
    finally:
        for conn in (holder, other):
            await conn.close()
    assert (blocked.locked, blocked.sealed) == (False, 0)
    assert (sealed.locked, sealed.sealed, sealed.more) == (True, 3, False)


async def test_stopping_flushes_queued_rows_at_once(fresh: str) -> None:
    """Closing the writer writes what is queued without waiting out the gathering interval."""
    db = await open_database(fresh, Settings().database)
    try:
        writer = AuditWriter(db, AuditRepository(load_queries()), flush_interval=30.0, max_rows=100, timeout=10)
        writer.start()
        queued = asyncio.create_task(writer.write(make_audit_entry("queued-at-shutdown")))
        await asyncio.sleep(0.05)
        assert not queued.done()
        await asyncio.wait_for(writer.close(), timeout=10)
        await queued
        with pytest.raises(AuditUnavailable):
            await writer.write(make_audit_entry("too-late"))
    finally:
        await db.close()
    rows = await _rows(fresh, "SELECT request_id FROM audit_events")
    assert [row["request_id"] for row in rows] == ["queued-at-shutdown"]


async def test_a_full_group_is_written_without_waiting(fresh: str) -> None:
    """Rows that fill a group are inserted together at once, not after the gathering interval."""
    db = await open_database(fresh, Settings().database)
    try:
        writer = AuditWriter(db, AuditRepository(load_queries()), flush_interval=30.0, max_rows=3, timeout=10)
        writer.start()
        entries = [make_audit_entry(f"group-{n}") for n in range(3)]
        await asyncio.wait_for(asyncio.gather(*(writer.write(e) for e in entries)), timeout=10)
        await writer.close()
    finally:
        await db.close()
    rows = await _rows(fresh, "SELECT count(*) AS n, count(DISTINCT xid) AS inserts FROM audit_events")
    assert (rows[0]["n"], rows[0]["inserts"]) == (3, 1)


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_row_need_not_wait_for_another_groups_commit(fresh: str, concurrency: int) -> None:
    """With two inserts allowed in flight, a row queued during a slow insert commits first; with one, it waits."""
    conn = await asyncpg.connect(fresh)
    try:
        await conn.execute(
            "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF NEW.request_id = 'slow' THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$; "
            "CREATE TRIGGER slow_row BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION slow_row()"
        )
    finally:
        await conn.close()
    db = await open_database(fresh, Settings().database)
    done: list[str] = []

    async def write(writer: AuditWriter, request_id: str) -> None:
        await writer.write(make_audit_entry(request_id))
        done.append(request_id)

    try:
        writer = AuditWriter(
            db, AuditRepository(load_queries()), flush_interval=0, max_rows=100, timeout=10, concurrency=concurrency
        )
        writer.start()
        slow = asyncio.create_task(write(writer, "slow"))
        await asyncio.sleep(0.3)  # the slow row's insert is under way
        await asyncio.wait_for(asyncio.gather(slow, write(writer, "fast")), timeout=10)
        await writer.close()
    finally:
        await db.close()
    assert done == (["fast", "slow"] if concurrency == 2 else ["slow", "fast"])
