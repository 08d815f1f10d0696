"""The audit row's privacy columns (migration 0011) in the hash chain of the trail by month (0008).

A trail begun under 0008 (last month's rows chained, this month's not yet) is upgraded to 0011, then
rows that state a purpose of use, a practitioner, a withheld count or break-glass join both months.
One chain runs through all of them: ``audit verify`` passes through the head kept from before the
upgrade and seals last month's checkpoint over both kinds of row; its export verifies offline and
renders each AuditEvent as ``GET /fhir/AuditEvent`` does; a privacy field changed in the export or
in the database is caught.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest

from registry.audit.chain import CANONICAL_VERSION, GENESIS, PRIVACY_VERSION, link_hash
from registry.audit.checkpoints import month_label
from registry.audit.export import CHAIN_FILE, EVENTS_FILE
from registry.audit.repository import AuditRepository
from registry.db.migrate import apply_migrations, known_migrations
from registry.db.queries import load_queries
from schemas.audit import AuditEntry, StoredAuditEvent
from tests.audit_months import months_back
from tests.cli import CliResult, InstanceOf, run_cli
from tests.factories import make_audit_entry, make_hpii, make_ihi, make_service_id
from tests.pg import TestCluster, as_owner, as_server
from tests.server import running_server
from tests.settings import test_settings

_NOW = {"IEF_AUDIT_CLOSE_GRACE_SECONDS": "0"}
"""Months close as soon as they end."""

_OLD_ROW = (
    "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path, observer,"
    " patients) VALUES ($1, $2, 'search-type', 'E', 0, 200, 'GET', '/registry/records/8003608166690503',"
    " 'registry', ARRAY['8003608166690503'])"
)
"""A row as a server of migration 0008 wrote it (no privacy columns then)."""

_PRACTITIONER = "8003611234567893"
_PRIVACY: dict[str, dict[str, object]] = {
    "purpose": {"purpose_of_use": "TREAT"},
    "practitioner": {"purpose_of_use": "TREAT", "practitioner": _PRACTITIONER},
    "withheld": {"withheld": 2},
    "break-glass": {"purpose_of_use": "ETREAT", "practitioner": _PRACTITIONER, "break_glass": True},
}
"""The rows written after the upgrade that say something of privacy, by request ID."""


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The upgraded instance, the chain's head before the upgrade, and last month's export."""

    instance: InstanceOf
    head_before: bytes
    export: Path


async def _cli(instance: InstanceOf, *args: str) -> CliResult:
    return await run_cli(instance, *args, extra_env=_NOW)


async def _chain_as_under_0008(conn: asyncpg.Connection, month_start: datetime) -> bytes:
    """Chain the rows of the month starting at ``month_start`` from the beginning, in (xid, id) order, as the
    sealer of migration 0008 did while the month was open; the head hash."""
    rows = await conn.fetch(
        "SELECT * FROM audit_events WHERE recorded >= $1 AND recorded < $2 ORDER BY xid, id",
        month_start,
        months_back(0),
    )
    prev = GENESIS
    for seq, row in enumerate(rows, start=1):
        event = StoredAuditEvent(
            **{k: row[k] for k in ("id", "xid", "recorded", "request_id", "peer_request_id", "interaction", "action",
                                   "outcome", "status", "detail", "method", "path", "query", "client_id",
                                   "client_service", "client_address", "token_id", "observer")},
            event_id=str(row["event_id"]), patients=tuple(row["patients"]), records=tuple(map(str, row["records"])),
        )  # fmt: skip
        digest = link_hash(prev, event)
        await conn.execute(
            "INSERT INTO audit_chain (seq, audit_id, prev_hash, hash, month) VALUES ($1, $2, $3, $4, $5)",
            seq, row["id"], prev, digest, month_start.date(),
        )  # fmt: skip
        prev = digest
    return prev


def _entry(request_id: str, recorded: datetime, **privacy: object) -> AuditEntry:
    return msgspec.structs.replace(make_audit_entry(request_id, patients=(make_ihi(),)), recorded=recorded, **privacy)


@pytest.fixture(scope="module")
async def upgraded(template: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    """Six rows of last month chained and three of this month unchained under 0008; upgraded through 0009 to
    the head; then a row of each privacy kind and a plain one in last month, two privacy rows in this month;
    sealed by `audit verify` (last month closed and checkpointed); last month exported."""
    url = await template.empty_database("ief_audit_privacy_upgrade")
    last = datetime.combine(months_back(1), time(), UTC)
    conn = await asyncpg.connect(as_owner(url))  # the role that runs migrations
    try:
        await apply_migrations(conn, through=8)
        for n in range(6):
            await conn.execute(_OLD_ROW, last + timedelta(hours=n + 1), f"old-last-{n}")
        for n in range(3):
            await conn.execute(_OLD_ROW, datetime.now(UTC), f"old-this-{n}")
        head_before = await _chain_as_under_0008(conn, last)
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    assert [m.version for m in applied] == [m.version for m in known_migrations() if m.version > 8]
    server = await asyncpg.connect(as_server(url))  # a server of the new release, as its role
    try:
        repo = AuditRepository(load_queries())
        day = last + timedelta(days=1)
        rows = [_entry(name, day + timedelta(hours=n), **cols) for n, (name, cols) in enumerate(_PRIVACY.items())]
        await repo.insert(server, [*rows, _entry("plain", last + timedelta(days=2))])
        await repo.insert(server, [_entry(f"now-{name}", datetime.now(UTC), **_PRIVACY[name]) for name in _PRIVACY][:2])
    finally:
        await server.close()
    instance = InstanceOf(url, make_service_id())
    verified = await _cli(instance, "audit", "verify", "--expect-head", head_before.hex())
    assert verified.code == 0, verified.err
    assert "ok: 16 rows chained" in verified.out
    assert "1 checkpoints verified" in verified.out
    folder = tmp_path_factory.mktemp("privacy-export") / "out"
    exported = await _cli(instance, "audit", "export", "--month", month_label(months_back(1)), "--to", str(folder))
    assert exported.code == 0, exported.err
    assert " 11 events to " in exported.out
    return Upgraded(instance, head_before, folder)


def _lines(folder: Path, name: str) -> list[bytes]:
    return (folder / name).read_bytes().splitlines(keepends=True)


def _chain_rows(folder: Path) -> list[bytes]:
    return [bytes(msgspec.json.decode(line, type=dict[str, msgspec.Raw])["row"]) for line in _lines(folder, CHAIN_FILE)]


async def test_rows_from_before_and_after_the_upgrade_share_one_chain_and_export(upgraded: Upgraded) -> None:
    """The export of last month holds the rows chained under 0008 (format 1), the privacy rows (format 2) and the
    plain row written after the upgrade (format 1), in chain order, and verifies offline against its checkpoint."""
    rows = [msgspec.json.decode(row) for row in _chain_rows(upgraded.export)]
    assert [(row[0], row[5]) for row in rows] == [
        *((CANONICAL_VERSION, f"old-last-{n}") for n in range(6)),
        *((PRIVACY_VERSION, name) for name in _PRIVACY),
        (CANONICAL_VERSION, "plain"),
    ]
    assert rows[6][-4:] == ["TREAT", None, 0, False]
    assert rows[9][-4:] == ["ETREAT", _PRACTITIONER, 0, True]
    offline = await run_cli(
        InstanceOf("postgresql://nowhere.invalid/none", upgraded.instance.service_id),
        "audit", "verify", "--export", str(upgraded.export),
    )  # fmt: skip
    assert offline.code == 0, offline.err
    assert ", 11 events, head hash " in offline.out


@pytest.fixture(scope="module")
async def fhir_reader(upgraded: Upgraded) -> AsyncIterator[httpx.AsyncClient]:
    """A server on the upgraded database and an admin client of its FHIR API."""
    instance = upgraded.instance
    async with running_server(test_settings(), instance.database_url, instance.service_id) as server:
        headers = await server.headers("admin")
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            yield http


async def test_the_export_renders_purpose_and_practitioner_as_the_fhir_api_does(
    upgraded: Upgraded, fhir_reader: httpx.AsyncClient
) -> None:
    """Every exported AuditEvent is the one ``GET /fhir/AuditEvent/{id}`` answers; the break-glass row carries its
    purpose (``purposeOfEvent``), its practitioner (an agent with the HPI-I) and says it was break-glass."""
    events = [msgspec.json.decode(line) for line in _lines(upgraded.export, EVENTS_FILE)]
    for event in events:
        answer = await fhir_reader.get(f"/fhir/AuditEvent/{event['id']}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == event
    glass = events[9]
    assert glass["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    practitioners = [a for a in glass["agent"] if a.get("who", {}).get("identifier", {}).get("value") == _PRACTITIONER]
    assert len(practitioners) == 1
    assert "break-glass" in glass["outcomeDesc"]
    assert "2 withheld" in events[8]["outcomeDesc"]
    assert "purposeOfEvent" not in events[0]


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("withheld count in the chain row", "line 9: chain entry 9 does not match its hash"),
        ("break-glass in the chain row", "line 10: chain entry 10 does not match its hash"),
        ("purpose in the chain row", "line 7: chain entry 7 does not match its hash"),
        ("purpose in the AuditEvent", "line 10 of AuditEvent.ndjson is not the AuditEvent of chain entry 10"),
        ("practitioner in the AuditEvent", "line 8 of AuditEvent.ndjson is not the AuditEvent of chain entry 8"),
    ],
)
async def test_a_changed_privacy_field_in_an_export_is_caught(
    upgraded: Upgraded, tmp_path: Path, tamper: str, named: str
) -> None:
    """A privacy field changed in a chain row breaks its hash; changed in an AuditEvent line, the line is no longer
    the rendering of its row."""
    folder = tmp_path / "copy"
    shutil.copytree(upgraded.export, folder)
    chain, events = _lines(folder, CHAIN_FILE), _lines(folder, EVENTS_FILE)
    if tamper == "withheld count in the chain row":
        chain[8] = chain[8].replace(b",2,false]", b",0,false]")
    elif tamper == "break-glass in the chain row":
        chain[9] = chain[9].replace(b",true]", b",false]")
    elif tamper == "purpose in the chain row":
        chain[6] = chain[6].replace(b'"TREAT"', b'"HPAYMT"')
    elif tamper == "purpose in the AuditEvent":
        events[9] = events[9].replace(b'"code":"ETREAT"', b'"code":"TREAT"')
    else:
        events[7] = events[7].replace(_PRACTITIONER.encode(), make_hpii().encode())
    assert (chain, events) != (_lines(upgraded.export, CHAIN_FILE), _lines(upgraded.export, EVENTS_FILE))
    (folder / CHAIN_FILE).write_bytes(b"".join(chain))
    (folder / EVENTS_FILE).write_bytes(b"".join(events))
    result = await run_cli(upgraded.instance, "audit", "verify", "--export", str(folder))
    assert result.code == 1, result.out
    assert named in result.err


@pytest.mark.parametrize(
    ("request_id", "change", "undo"),
    [
        ("withheld", "withheld = 0", "withheld = 2"),
        ("break-glass", "break_glass = false", "break_glass = true"),
        ("practitioner", "practitioner = NULL", f"practitioner = '{_PRACTITIONER}'"),
        ("plain", "purpose_of_use = 'TREAT'", "purpose_of_use = NULL"),
    ],
)
async def test_a_changed_privacy_column_fails_the_live_verify(
    upgraded: Upgraded, request_id: str, change: str, undo: str
) -> None:
    """A privacy column rewritten in the database (triggers bypassed, as a superuser could), or one set on a row that
    had none, fails `audit verify` naming the row; put back, the trail verifies again."""
    conn = await asyncpg.connect(upgraded.instance.database_url)
    try:
        row_id = await conn.fetchval("SELECT id FROM audit_events WHERE request_id = $1", request_id)
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(f"UPDATE audit_events SET {change} WHERE id = $1", row_id)
        try:
            result = await _cli(upgraded.instance, "audit", "verify")
        finally:
            await conn.execute(f"UPDATE audit_events SET {undo} WHERE id = $1", row_id)
    finally:
        await conn.close()
    assert result.code == 1, result.out
    assert f"row id {row_id} " in result.err
    assert "does not match its hash" in result.err
    assert (await _cli(upgraded.instance, "audit", "verify")).code == 0
