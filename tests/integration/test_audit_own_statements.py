"""Audit rows that record statements insert themselves belong to the trail as the group writer's rows do.

Two statements insert a request's audit row beside their own work, outside the group writer: a
record write's (``put_record_audited``) and a look-up's while the trail is idle
(``get_records_audited``). Their rows go into the partition of their month, are chained by the
sealer, checkpointed with their month, exported and verified offline exactly like the rows of
``insert_audit_events``, with the purpose of use and the practitioner they name; and the rows a
running server writes by every path (a look-up alone, many at once, a write, a batch) verify with
``ief-registry audit verify``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec

from registry.audit.checkpoints import month_label
from registry.audit.export import EVENTS_FILE
from registry.audit.repository import AuditRepository
from registry.config import LogSettings, Settings
from registry.db.queries import load_queries
from registry.records.repository import RecordRepository, Writer
from schemas.audit import AuditEntry
from tests.audit_months import months_back
from tests.cli import InstanceOf, run_cli
from tests.factories import make_audit_entry, make_ihi, make_service_id
from tests.pg import TestCluster, as_server
from tests.server import add_service, running_server

_NOW = {"IEF_AUDIT_CLOSE_GRACE_SECONDS": "0"}
"""Months close as soon as they end (a test may run in the first minutes of a month)."""


_PRACTITIONER = "8003611234567893"


def _entry(request_id: str, ihi: str, at: datetime, *, action: str = "E") -> AuditEntry:
    return msgspec.structs.replace(
        make_audit_entry(request_id, patients=(ihi,)),
        recorded=at, action=action, purpose_of_use="TREAT", practitioner=_PRACTITIONER,
    )  # fmt: skip


async def test_rows_of_writes_and_look_ups_are_chained_exported_and_verified_like_the_writers(
    template: TestCluster, tmp_path: Path
) -> None:
    """Rows inserted by a write's and a look-up's own statements, as the server's role, land in their month's
    partition between the group writer's rows with the purpose and practitioner they were given, and that month
    seals, exports (each event with its purpose and practitioner) and verifies offline."""
    instance = InstanceOf(await template.new_database(), make_service_id())
    gateway = make_service_id()
    await add_service(instance.database_url, gateway)
    last = months_back(1)
    noon = datetime.combine(last, time(12), tzinfo=UTC)
    queries = load_queries()
    records, audit = RecordRepository(queries), AuditRepository(queries)
    ihis = [make_ihi() for _ in range(3)]
    conn = await asyncpg.connect(as_server(instance.database_url))
    try:
        for n, ihi in enumerate(ihis):
            at = noon + timedelta(minutes=n)
            await audit.insert(conn, [_entry(f"group-{n}", ihi, at)])
            await records.put_audited(
                conn, ihi=ihi, service_id=gateway, status="active", type_="record",
                writer=Writer("test", gateway, admin=False), reason=None, labels=None,
                audit_rows=[("created", _entry(f"write-{n}", ihi, at, action="C"))],
            )  # fmt: skip
            found, audited = await records.for_ihi_audited(conn, ihi, ["active"], _entry(f"look-up-{n}", ihi, at))
            assert ([r.service_id for r in found], audited) == ([gateway], True)
        placed = await conn.fetch(
            "SELECT request_id, tableoid::regclass::text AS partition, records, purpose_of_use, practitioner"
            " FROM audit_events ORDER BY id"
        )
        record_ids = {r["ihi"]: r["record_id"] for r in await conn.fetch("SELECT ihi, record_id FROM records")}
    finally:
        await conn.close()
    assert {row["partition"] for row in placed} == {f"audit_events_y{last.year}m{last.month:02d}"}
    kept = {row["request_id"]: row["records"] for row in placed}
    assert [kept[f"look-up-{n}"] for n in range(3)] == [[record_ids[ihi]] for ihi in ihis]
    assert [kept[f"write-{n}"] for n in range(3)] == [[record_ids[ihi]] for ihi in ihis]
    assert {(row["purpose_of_use"], row["practitioner"]) for row in placed} == {("TREAT", _PRACTITIONER)}

    verified = await run_cli(instance, "audit", "verify", extra_env=_NOW)
    assert verified.code == 0, verified.err
    assert "ok: 9 rows chained" in verified.out
    folder = tmp_path / "export"
    exported = await run_cli(instance, "audit", "export", "--month", month_label(last), "--to", str(folder))
    assert exported.code == 0, exported.err
    events = [msgspec.json.decode(line) for line in (folder / EVENTS_FILE).read_bytes().splitlines()]
    assert len(events) == 9
    assert {e["purposeOfEvent"][0]["coding"][0]["code"] for e in events} == {"TREAT"}
    assert all(_PRACTITIONER in msgspec.json.encode(e["agent"]).decode() for e in events)
    offline = await run_cli(
        InstanceOf("postgresql://nowhere.invalid/none", instance.service_id), "audit", "verify", "--export", str(folder)
    )
    assert offline.code == 0, offline.err
    assert f"ok: export {folder}: {month_label(last)}, 9 events" in offline.out


async def test_a_servers_rows_by_every_path_verify(template: TestCluster) -> None:
    """Look-ups one at a time (each row in its read's statement) and many at once (rows in groups), writes (a row
    in the write's statement) and a batch (a row in its transaction) leave a trail that ``audit verify`` passes."""
    database_url = await template.new_database()
    service_id, gateway = make_service_id(), make_service_id()
    await add_service(database_url, gateway)
    ihis = [make_ihi() for _ in range(5)]
    async with running_server(Settings(log=LogSettings(access=False)), database_url, service_id) as server:
        headers = await server.headers("system/Basic.cu system/Basic.rs", service_id=gateway)
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as http:
            active = {"status": "active"}
            writes = [await http.put(f"/registry/records/{ihi}/{gateway}", json=active) for ihi in ihis[:3]]
            assert [w.status_code for w in writes] == [201] * 3
            batch = [{"ihi": ihi, "serviceId": gateway} for ihi in ihis[3:]]
            assert (await http.post("/registry/records:batch", json=batch)).json()["created"] == 2
            alone = [await http.get(f"/registry/records/{ihi}") for ihi in ihis]
            crowd = await asyncio.gather(*(http.get(f"/registry/records/{ihis[n % 5]}") for n in range(30)))
        assert all(len(r.json()["records"]) == 1 for r in (*alone, *crowd))
    verified = await run_cli(InstanceOf(database_url, service_id), "audit", "verify", extra_env=_NOW)
    assert verified.code == 0, verified.err
    assert await _count(database_url) == 3 + 1 + 5 + 30  # every request its row
    assert "ok: 39 rows chained" in verified.out


async def _count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_events"))
    finally:
        await conn.close()


async def test_a_look_up_inserts_its_own_row_only_when_the_decision_point_has_nothing_to_decide(
    template: TestCluster,
) -> None:
    """The look-up's statement inserts the request's row for a patient without Consents whose records carry no
    label needing a clearance (the row names every record found); for a patient with a Consent, or with such a
    label on a record found, it inserts nothing and says so, so the caller decides first and audits after."""
    database_url = await template.new_database()
    gateway = make_service_id()
    await add_service(database_url, gateway)
    plain, consented, labelled, unlabelled_sensitivity = make_ihi(), make_ihi(), make_ihi(), make_ihi()
    records = RecordRepository(load_queries())
    writer = Writer("test", gateway, admin=False)
    conn = await asyncpg.connect(as_server(database_url))
    now = datetime.now(UTC)
    try:
        for ihi, labels in (
            (plain, None), (consented, None), (labelled, ["PSY"]), (unlabelled_sensitivity, ["N"]),
        ):  # fmt: skip
            await records.put(
                conn, ihi=ihi, service_id=gateway, status="active", type_="record", writer=writer, reason=None,
                labels=labels,
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO consents (ihi, status, resource, rules, actor) VALUES ($1, 'active', '{}', $2, 'c')",
            consented, '["c1", false]',
        )  # fmt: skip
        answers = {}
        for ihi in (plain, consented, labelled, unlabelled_sensitivity):
            found, audited = await records.for_ihi_audited(conn, ihi, ["active"], _entry(f"look-up-{ihi}", ihi, now))
            answers[ihi] = ([r.service_id for r in found], audited)
        rows = {
            row["request_id"]: row for row in await conn.fetch("SELECT request_id, records, withheld FROM audit_events")
        }
    finally:
        await conn.close()
    assert answers == {
        plain: ([gateway], True), consented: ([gateway], False), labelled: ([gateway], False),
        unlabelled_sensitivity: ([gateway], True),
    }  # fmt: skip
    assert sorted(rows) == sorted([f"look-up-{plain}", f"look-up-{unlabelled_sensitivity}"])
    assert all(len(row["records"]) == 1 and row["withheld"] == 0 for row in rows.values())
