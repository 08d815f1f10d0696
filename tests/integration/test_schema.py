"""Migrations on a real PostgreSQL: apply from zero, idempotent, every named query prepares and uses its indexes."""

from __future__ import annotations

import asyncpg
import pytest

from registry.db.migrate import apply_migrations, known_migrations, schema_state
from registry.db.queries import load_queries
from registry.records.repository import RecordRepository, Writer
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster, as_owner, table_activity
from tests.server import add_service


async def test_migrations_apply_from_zero_and_then_nothing(template: TestCluster) -> None:
    """An empty database gets every migration once; a second run applies nothing and is at head."""
    conn = await asyncpg.connect(await template.empty_database("ief_schema_zero"))
    try:
        assert (await schema_state(conn)).pending
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        state = await schema_state(conn)
    finally:
        await conn.close()
    assert [m.version for m in first] == [m.version for m in state.known]
    assert second == []
    assert state.at_head


async def test_every_named_query_prepares(template: TestCluster) -> None:
    """Every statement in sql/queries is valid SQL against the migrated schema (PREPARE succeeds)."""
    conn = await asyncpg.connect(await template.new_database())
    try:
        queries = load_queries()
        async with conn.transaction():
            await conn.execute(queries["stage_batch"])  # the batch statements read the staging table it makes
            for name in queries.names():
                await conn.prepare(queries[name])
    finally:
        await conn.close()


async def _records_tuples_read(conn: asyncpg.Connection) -> int:
    activity = await table_activity(conn, "records")
    return int(activity["seq_tup_read"] + activity["idx_tup_fetch"])


async def test_writes_and_reads_by_ihi_use_the_primary_key(template: TestCluster) -> None:
    """Writes and look-ups of one IHI read a handful of rows, not every record of the service (the key is used)."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    repository = RecordRepository(load_queries())
    writer = Writer("test", service_id, admin=False)
    loaded = [make_ihi() for _ in range(2000)]
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await repository.merge_batch(
                conn, [(n, ihi, service_id, "active", "record", None, None) for n, ihi in enumerate(loaded)], writer
            )
        await conn.execute("ANALYZE records")
        before = await _records_tuples_read(conn)
        for status in ("archived", "archived"):  # an update, then an unchanged repeat
            await repository.put(
                conn,
                ihi=loaded[0],
                service_id=service_id,
                status=status,
                type_="record",
                writer=writer,
                reason=None,
                labels=None,
            )
        async with conn.transaction():
            await repository.merge_batch(
                conn,
                [(n, ihi, service_id, "removed", "record", None, None) for n, ihi in enumerate(loaded[1:3])],
                writer,
            )
        await repository.for_ihi(conn, loaded[1], ["active"])
        await repository.by_key(conn, loaded[1], service_id)
        await repository.search(
            conn,
            ihis=[loaded[2]],
            service_ids=None,
            record_ids=None,
            statuses=["active"],
            unrouted=False,
            limit=10,
            offset=0,
        )
        read = await _records_tuples_read(conn) - before
    finally:
        await conn.close()
    assert read < 50


async def test_every_write_after_creation_updates_the_record_in_place(template: TestCluster) -> None:
    """Status changes, re-registrations, an operator's hold and a change of labels are HOT updates of a
    bulk-loaded record (no index of ``records`` touched: migration 0015 leaves room on every page), and most
    of a batch's; a record's versions are read through the history index, never by a scan of the history."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    repository = RecordRepository(load_queries())
    gateway = Writer("test", service_id, admin=False)
    operator = Writer("operator", service_id, admin=True)
    loaded = [make_ihi() for _ in range(3000)]
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await repository.merge_batch(
                conn, [(n, ihi, service_id, "active", "record", None, None) for n, ihi in enumerate(loaded)], gateway
            )
        before = await table_activity(conn, "records")
        writes = [
            (loaded[0], "archived", gateway, None, None),  # a status change
            (loaded[0], "active", gateway, None, None),
            (loaded[1], "active", gateway, None, None),  # a re-registration
            (loaded[1], "active", gateway, None, None),
            (loaded[2], "removed", operator, "withdrawn", None),  # an operator's decision, with its reason
            (loaded[2], "active", operator, None, None),
            (loaded[3], "active", gateway, None, ["PSY"]),  # labels changed
        ]
        for ihi, status, writer, reason, labels in writes:
            await repository.put(
                conn, ihi=ihi, service_id=service_id, status=status, type_="record", writer=writer, reason=reason,
                labels=labels,
            )  # fmt: skip
        singles = await table_activity(conn, "records")
        for status in ("active", "archived"):  # a batch's re-registrations, then its status changes
            async with conn.transaction():
                await repository.merge_batch(
                    conn,
                    [(n, ihi, service_id, status, "record", None, None) for n, ihi in enumerate(loaded[100:400])],
                    gateway,
                )
        batches = await table_activity(conn, "records")
        history_before = await table_activity(conn, "record_history")
        record = await repository.by_key(conn, loaded[0], service_id)
        assert record is not None
        first = await repository.version(conn, record.record_id, 1)
        versions, total = await repository.versions(conn, record.record_id, since=None, limit=10, offset=0)
        history_after = await table_activity(conn, "record_history")
    finally:
        await conn.close()
    assert singles["n_tup_upd"] - before["n_tup_upd"] == len(writes)
    assert singles["n_tup_hot_upd"] - before["n_tup_hot_upd"] == len(writes)
    # A batch updating a tenth of the records twice may fill a page's room (about two rows in twenty) where
    # it happens to hold several of them: most of its updates stay in place (with a full page, none did).
    assert batches["n_tup_upd"] - singles["n_tup_upd"] == 600
    assert batches["n_tup_hot_upd"] - singles["n_tup_hot_upd"] >= 400
    assert first is not None
    assert (first.record.version, first.change) == (1, "created")
    assert [v.record.version for v in versions] == [3, 2, 1]
    assert total == 3
    assert history_after["seq_scan"] == history_before["seq_scan"]
    assert history_after["idx_scan"] - history_before["idx_scan"] == 2


async def test_a_subscriptions_later_events_bump_its_counter_in_place(template: TestCluster) -> None:
    """A subscription's first pending event changes what the delivery index holds; its later events update the
    row in place (HOT: migration 0016), however many there are; the worker's claim still finds it by that index."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    ihi = make_ihi()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO clients (client_id, name, service_id, scopes, auth_method)"
            " VALUES ('c1', 'C', $1, '{}', 'none')",
            service_id,
        )
        await conn.execute(
            "INSERT INTO subscriptions (client_id, reason, base_url, endpoint, payload_type, content, secret,"
            " timeout_seconds, status, filter_ihi) VALUES ('c1', 'r', 'https://r.example/fhir', 'https://s.example/h',"
            " 'application/fhir+json', 'id-only', 'whsec_x', 10, 'active', $1)",
            ihi,
        )
        before = await table_activity(conn, "subscriptions")
        for _ in range(6):  # created, then five re-registrations: six events
            await conn.fetchrow(
                "SELECT * FROM put_record($1, $2, 'active', 'record', 'c1', $2, false, NULL, NULL)", ihi, service_id
            )
        after = await table_activity(conn, "subscriptions")
        row = await conn.fetchrow("SELECT events_since_start, delivered_through, undelivered FROM subscriptions")
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + load_queries()["claim_due"].replace("$1", "10", 1)
                                            .replace("$2", "5", 1).replace("$3", "'w1'", 1))
        )  # fmt: skip
    finally:
        await conn.close()
    assert row is not None
    assert (row["events_since_start"], row["delivered_through"], row["undelivered"]) == (6, 0, True)
    assert after["n_tup_upd"] - before["n_tup_upd"] == 6
    assert after["n_tup_hot_upd"] - before["n_tup_hot_upd"] == 5
    assert "subscriptions_due_idx" in plan


async def test_records_name_services_of_the_directory(template: TestCluster) -> None:
    """A statement that writes records naming a service not in the directory fails whole (checked once per
    statement, not per row), and a service that records name can be neither deleted nor renamed."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO records (ihi, service_id, status, type) VALUES ($1, $2, 'active', 'record'), "
                "($3, $4, 'active', 'record')",
                make_ihi(), service_id, make_ihi(), make_service_id(),
            )  # fmt: skip
        ihi = make_ihi()
        await conn.execute(
            "INSERT INTO records (ihi, service_id, status, type) VALUES ($1, $2, 'active', 'record')", ihi, service_id
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE records SET service_id = $2 WHERE ihi = $1", ihi, make_service_id())
        # Re-pointing several records at once (as `services move` does), with or without a new version: one
        # record naming an unknown service fails the statement; to a known one, the history names the old one.
        other, moved = make_service_id(), make_ihi()
        await add_service(database_url, other)
        await conn.execute(
            "INSERT INTO records (ihi, service_id, status, type) VALUES ($1, $2, 'active', 'record')", moved, service_id
        )
        unknown = make_service_id()
        for version in ("version", "version + 1"):
            with pytest.raises(asyncpg.ForeignKeyViolationError, match=unknown):
                await conn.execute(
                    f"UPDATE records SET service_id = CASE WHEN ihi = $1 THEN $2 ELSE $3 END, version = {version} "
                    "WHERE ihi IN ($1, $4)",
                    ihi, unknown, other, moved,
                )  # fmt: skip
        await conn.execute(
            "UPDATE records SET service_id = $2, version = version + 1, change = 'moved' WHERE ihi IN ($1, $3)",
            ihi, other, moved,
        )  # fmt: skip
        previous = await conn.fetch(
            "SELECT service_id, previous_service FROM record_history WHERE change = 'moved' ORDER BY ihi"
        )
        assert [tuple(row) for row in previous] == [(other, service_id), (other, service_id)]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM services WHERE service_id = $1", service_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "UPDATE services SET service_id = $2 WHERE service_id = $1", service_id, make_service_id()
            )
        assert await conn.fetchval("SELECT count(*) FROM records") == 2
        assert await conn.fetchval("SELECT count(*) FROM records WHERE service_id = $1", other) == 2
    finally:
        await conn.close()


_SCHEMA = """
SELECT string_agg(item, E'\\n' ORDER BY item) FROM (
    SELECT format('column %s.%s %s %s %s', c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default)
    FROM information_schema.columns c
    WHERE c.table_schema = 'public' AND c.table_name NOT LIKE 'audit\\_%\\_y%'
    UNION ALL
    SELECT format('function %s(%s) definer=%s %s %s', p.proname, pg_get_function_identity_arguments(p.oid),
                  p.prosecdef, p.proconfig, md5(p.prosrc))
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT format('trigger %s %s', t.tgrelid::regclass, pg_get_triggerdef(t.oid))
    FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
    WHERE NOT t.tgisinternal AND r.relnamespace = 'public'::regnamespace AND r.relname NOT LIKE 'audit\\_%\\_y%'
    UNION ALL
    SELECT format('constraint %s %s', c.conrelid::regclass, pg_get_constraintdef(c.oid))
    FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
    WHERE r.relnamespace = 'public'::regnamespace AND r.relname NOT LIKE 'audit\\_%\\_y%'
) AS s(item)
"""
"""The schema's tables, functions (with SECURITY DEFINER and settings), triggers and constraints as text (the
month partitions of the audit trail left out: which months exist depends on the day)."""


async def _migrated(template: TestCluster, name: str, through: int | None) -> tuple[list[int], str]:
    conn = await asyncpg.connect(as_owner(await template.empty_database(name)))
    try:
        if through is not None:
            await apply_migrations(conn, through=through)
        applied = [m.version for m in await apply_migrations(conn)]
        return applied, str(await conn.fetchval(_SCHEMA))
    finally:
        await conn.close()


async def test_an_upgrade_from_every_earlier_migration_ends_at_the_schema_of_a_fresh_database(
    template: TestCluster,
) -> None:
    """From each earlier migration, the rest apply in order and end at the schema migrating from zero makes: 0018's
    put_record() and its one trigger per write on records (as the owner) in place."""
    versions = [m.version for m in known_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    applied, fresh = await _migrated(template, "ief_schema_fresh", None)
    assert applied == versions
    assert "function records_inserted() definer=t " in fresh
    assert "function records_changed() definer=t " in fresh
    assert "function put_record(" in fresh
    assert "column records.security_labels ARRAY NO" in fresh
    for through in versions[:-1]:
        applied, upgraded = await _migrated(template, f"ief_schema_from_{through}", through)
        assert applied == versions[through:], through
        assert upgraded == fresh, f"upgraded from {through:04d}"


async def test_no_function_that_turns_a_plan_node_off_leaves_jit_on(template: TestCluster) -> None:
    """A function that sets ``enable_*`` off also sets ``jit`` off: a node type turned off costs its plan more than
    ``jit_above_cost`` where it cannot be avoided (a cross join), and every call would compile the statement."""
    conn = await asyncpg.connect(await template.new_database())
    try:
        rows = await conn.fetch(
            "SELECT p.proname, p.proconfig FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " AND EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'enable\\_%=off')"
        )
    finally:
        await conn.close()
    assert {row["proname"] for row in rows} >= {"records_inserted", "records_changed"}
    assert [row["proname"] for row in rows if "jit=off" not in row["proconfig"]] == []


async def test_a_publishing_registrys_writes_compile_no_statement(template: TestCluster) -> None:
    """With a publication set up, creations, re-registrations, status changes and batches run no statement through
    JIT (before migration 0018 the publication's statement was compiled on every update: 100-250 ms each), and
    each IHI whose "has an active record here" changed is in the outbox."""
    database_url = await template.new_database()
    service_id, national = make_service_id(), make_service_id()
    await add_service(database_url, service_id)
    await add_service(database_url, national, kind="registry")
    repository = RecordRepository(load_queries())
    gateway = Writer("test", service_id, admin=False)
    ihis = [make_ihi() for _ in range(3)]
    conn = await asyncpg.connect(database_url)
    plans: list[str] = []
    try:
        await conn.execute("INSERT INTO publications (target) VALUES ($1)", national)
        # Every statement's plan, the nested ones of put_record() and its trigger included, as it ran.
        await conn.execute("LOAD 'auto_explain'")
        await conn.execute("SET auto_explain.log_min_duration = 0")
        await conn.execute("SET auto_explain.log_nested_statements = on")
        await conn.execute("SET client_min_messages = log")
        conn.add_log_listener(lambda _conn, message: plans.append(str(message.message)))
        for ihi, status in [(ihis[0], "active"), (ihis[0], "active"), (ihis[0], "archived"), (ihis[1], "active")]:
            await repository.put(
                conn, ihi=ihi, service_id=service_id, status=status, type_="record", writer=gateway, reason=None,
                labels=None,
            )  # fmt: skip
        async with conn.transaction():
            await repository.merge_batch(
                conn, [(n, ihi, service_id, "archived", "record", None, None) for n, ihi in enumerate(ihis)], gateway
            )
        await conn.execute("RESET client_min_messages")
        outbox = [row["ihi"] for row in await conn.fetch("SELECT ihi FROM publication_outbox ORDER BY seq")]
    finally:
        await conn.close()
    triggered = [plan for plan in plans if "publication_outbox" in plan]
    assert len(triggered) >= 5  # every write's trigger statement was seen
    assert [plan for plan in plans if "JIT:" in plan] == []
    # created (ihis[0]), archived (ihis[0]), created (ihis[1]), the batch: ihis[1] archived, ihis[2] created archived
    assert outbox == [ihis[0], ihis[0], ihis[1], ihis[1]]
