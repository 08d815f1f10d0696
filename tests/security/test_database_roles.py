"""The server's database role cannot get round the append-only rules.

Schema objects belong to ``ief_owner``; server processes log in as a member of ``ief_server``
(``ief_app`` in the embedded and the test clusters), which owns nothing and holds only the grants
of migrations 0007, 0008 and 0011. So a compromised server process cannot delete or rewrite audit
rows, records, Consents or their histories, truncate them, disable the triggers that keep them,
forge history rows or a patient's privacy policy, change who may log in or what a client is cleared
for; and every test of the suite runs its servers as that role.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from registry.db.migrate import apply_migrations
from registry.db.queries import load_queries
from registry.db.roles import OWNER_ROLE, SERVER_LOGIN, SERVER_ROLE
from registry.records.repository import RecordRepository, Writer
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster, as_owner, as_server
from tests.server import RunningServer

REFUSED = [
    "DELETE FROM audit_events",
    "UPDATE audit_events SET detail = 'rewritten'",
    "TRUNCATE audit_events",
    "DELETE FROM audit_chain",
    "DELETE FROM records",
    "TRUNCATE records CASCADE",
    "DELETE FROM record_history",
    "INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, recorded_at)"
    " VALUES ('8003608166690503', 'x', gen_random_uuid(), 1, 'created', 'active', 'record', now())",
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "ALTER TABLE records DISABLE TRIGGER records_no_delete",
    "SET session_replication_role = replica",
    "DROP TRIGGER audit_events_append_only ON audit_events",
    "DROP TABLE audit_chain",
    "CREATE TABLE shadow (x int)",
    "CREATE FUNCTION shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "INSERT INTO services (service_id, kind, name, base_url) VALUES ('x', 'gateway', 'x', 'https://x')",
    "UPDATE services SET base_url = 'https://elsewhere.example'",
    "UPDATE clients SET scopes = '{admin}'",
    "UPDATE clients SET clearances = '{PSY,HIV}', break_glass = true",
    "DELETE FROM consents",
    "TRUNCATE consents",
    "UPDATE consent_history SET status = 'inactive'",
    "DELETE FROM consent_history",
    "INSERT INTO consent_history (consent_id, ihi, version, status, resource, actor, recorded_at)"
    " VALUES (gen_random_uuid(), '8003608166690503', 1, 'inactive', '{}', 'x', now())",
    "DELETE FROM patient_policies",
    "UPDATE patient_policies SET policy = '[]'",
    "INSERT INTO patient_policies (ihi, policy) VALUES ('8003608166690503', '[]')",
    "UPDATE auth_keys SET retired_at = now()",
    "DELETE FROM auth_keys",
    "CREATE ROLE intruder",
    "ALTER ROLE ief_app SUPERUSER",
    "GRANT ief_owner TO ief_app",
]
"""What a server process must never be able to do."""


@pytest.fixture
async def as_app(template: TestCluster) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh test database as the server's login role, with a record and an audit row in it."""
    url = await template.new_database()
    owner = await asyncpg.connect(as_owner(url))
    try:
        gateway = make_service_id()
        await owner.execute(
            "INSERT INTO services (service_id, kind, name, base_url, bearer_token_file)"
            " VALUES ($1, 'gateway', 'G', 'https://g.example', '/etc/ief/gateway-token')",
            gateway,
        )
    finally:
        await owner.close()
    conn = await asyncpg.connect(as_server(url))
    try:
        await conn.execute("SELECT * FROM put_record($1, $2, 'active', 'record')", make_ihi(), gateway)
        await conn.execute(
            "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path,"
            " observer) VALUES (now(), 'r', 'read', 'R', 0, 200, 'GET', '/', 'o')"
        )
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", REFUSED)
async def test_the_server_role_is_refused_what_would_defeat_the_trail(
    as_app: asyncpg.Connection, statement: str
) -> None:
    """Each statement that would delete, rewrite, forge or unguard kept rows is refused for lack of privilege."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_app.transaction():
            await as_app.execute(statement)


async def test_the_server_role_owns_nothing_and_holds_no_attributes(as_app: asyncpg.Connection) -> None:
    """The login role is a plain member of ``ief_server``: no superuser, role, database or replication attribute,
    and no table, function or sequence of the schema is its or its group's."""
    role = await as_app.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1",
        SERVER_LOGIN,
    )
    assert role is not None
    assert not any(role.values())
    owned = await as_app.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = ANY($1::text[])",
        [SERVER_LOGIN, SERVER_ROLE],
    )
    functions = await as_app.fetchval(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) = ANY($1::text[])",
        [SERVER_LOGIN, SERVER_ROLE],
    )
    assert (owned, functions) == (0, 0)
    assert await as_app.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", SERVER_LOGIN, SERVER_ROLE)
    assert not await as_app.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", SERVER_LOGIN, OWNER_ROLE)


async def test_the_server_role_writes_what_a_server_writes(as_app: asyncpg.Connection) -> None:
    """A write through ``put_record`` stores the record and its history row (written by the owner's trigger)."""
    ihi = make_ihi()
    gateway = await as_app.fetchval("SELECT service_id FROM services LIMIT 1")
    await as_app.execute("SELECT * FROM put_record($1, $2, 'active', 'record')", ihi, gateway)
    await as_app.execute("SELECT * FROM put_record($1, $2, 'removed', 'record')", ihi, gateway)
    changes = await as_app.fetch("SELECT change, status FROM record_history WHERE ihi = $1::bpchar ORDER BY id", ihi)
    assert [(c["change"], c["status"]) for c in changes] == [("created", "active"), ("status-changed", "removed")]


async def test_the_server_role_writes_the_directory_only_through_directory_put(as_app: asyncpg.Connection) -> None:
    """The FHIR Endpoint writes go through ``directory_put()``: it changes an entry but keeps the bearer token file
    (and the token endpoint) that only the owner sets, and never retires a service; the table itself is refused."""
    gateway = await as_app.fetchval("SELECT service_id FROM services LIMIT 1")
    put = (
        "SELECT * FROM directory_put($1, 'gateway', $2, 'https://g.example', 'ief', $3,"
        " NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    changed = await as_app.fetchrow(put, gateway, "Renamed", "disabled")
    assert changed is not None
    assert (changed["name"], changed["status"], changed["created"]) == ("Renamed", "disabled", False)
    assert changed["bearer_token_file"] == "/etc/ief/gateway-token"  # noqa: S105 - a file name, not a secret
    with pytest.raises(asyncpg.CheckViolationError):
        await as_app.fetchrow(put, gateway, "Renamed", "retired")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_app.execute("UPDATE services SET bearer_token_file = '/etc/shadow'")


async def test_the_server_role_stages_and_merges_a_batch(template: TestCluster) -> None:
    """In a database whose temporary tables are nobody's by default (docs/deployment.md revokes PUBLIC's), a batch
    as the server's role stages its items in a temporary table (granted by migration 0012), copies and merges
    them; the per-statement service check (run as the owner) refuses a record naming a service not in the
    directory."""
    url = await template.empty_database(f"ief_roles_{uuid.uuid4().hex[:12]}")
    superuser = await asyncpg.connect(url)
    try:
        database = urlsplit(url).path.strip("/")
        await superuser.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        await superuser.execute(f"GRANT CONNECT ON DATABASE {database} TO {SERVER_LOGIN}")
    finally:
        await superuser.close()
    owner = await asyncpg.connect(as_owner(url))
    try:
        await apply_migrations(owner)
        gateway = make_service_id()
        await owner.execute(
            "INSERT INTO services (service_id, kind, name, base_url) VALUES ($1, 'gateway', 'G', 'https://g.example')",
            gateway,
        )
    finally:
        await owner.close()
    server = await asyncpg.connect(as_server(url))
    try:
        ihis = sorted(make_ihi() for _ in range(3))
        async with server.transaction():
            staged = [
                (n, ihi, gateway, "active", "record", None, ["PSY"] if n == 0 else None) for n, ihi in enumerate(ihis)
            ]
            rows = await RecordRepository(load_queries()).merge_batch(
                server, staged, Writer("test", gateway, admin=False)
            )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await server.execute(
                "INSERT INTO records (ihi, service_id, status, type) VALUES ($1, $2, 'active', 'record')",
                make_ihi(), make_service_id(),
            )  # fmt: skip
        stored = await server.fetchval("SELECT count(*) FROM records")
    finally:
        await server.close()
    assert sorted(row.outcome for row in rows.values()) == ["created"] * 3
    assert stored == 3


async def test_the_server_role_writes_consents_and_the_owner_keeps_their_history(as_app: asyncpg.Connection) -> None:
    """A Consent written as the server's role gets its history row and the patient's policy from the owner's
    trigger; withdrawing it (a new version, inactive) removes the policy and keeps both versions."""
    ihi = make_ihi()
    rules = '["c1", false]'
    consent = await as_app.fetchval(
        "INSERT INTO consents (ihi, status, resource, rules, actor) VALUES ($1, 'active', '{}', $2, 'c')"
        " RETURNING consent_id",
        ihi,
        rules,
    )
    assert await as_app.fetchval("SELECT policy::text FROM patient_policies WHERE ihi = $1::bpchar", ihi)
    await as_app.execute(
        "UPDATE consents SET status = 'inactive', version = version + 1 WHERE consent_id = $1", consent
    )
    assert await as_app.fetchval("SELECT count(*) FROM patient_policies WHERE ihi = $1::bpchar", ihi) == 0
    versions = await as_app.fetch(
        "SELECT version, status FROM consent_history WHERE consent_id = $1 ORDER BY version", consent
    )
    assert [(v["version"], v["status"]) for v in versions] == [(1, "active"), (2, "inactive")]


async def test_a_function_the_owner_defines_later_is_the_servers_to_call_not_everyones(template: TestCluster) -> None:
    """A SECURITY DEFINER maintenance function a later migration defines (as the owner) can be executed by the
    server's role without a grant of its own, and not by a role outside ``ief_server``."""
    url = await template.new_database()
    owner = await asyncpg.connect(as_owner(url))
    try:
        await owner.execute(
            "CREATE FUNCTION maintenance_probe() RETURNS bigint LANGUAGE sql SECURITY DEFINER"
            " SET search_path = pg_catalog, public AS 'SELECT count(*) FROM audit_events'"
        )
    finally:
        await owner.close()
    server = await asyncpg.connect(as_server(url))
    try:
        assert await server.fetchval("SELECT maintenance_probe()") == 0
    finally:
        await server.close()
    superuser = await asyncpg.connect(url)
    try:
        await superuser.execute("DROP ROLE IF EXISTS ief_stranger; CREATE ROLE ief_stranger LOGIN")
        await superuser.execute(f"GRANT CONNECT ON DATABASE {urlsplit(url).path.strip('/')} TO ief_stranger")
    finally:
        await superuser.close()
    stranger = await asyncpg.connect(url.replace("postgresql://ief@", "postgresql://ief_stranger@"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await stranger.fetchval("SELECT maintenance_probe()")
    finally:
        await stranger.close()


async def test_the_suites_servers_run_as_the_server_role(server: RunningServer) -> None:
    """The session's server holds its connections as ``ief_app`` (so every test exercises the grants)."""
    conn = await asyncpg.connect(server.database_url)
    try:
        users = await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert SERVER_LOGIN in {row["usename"] for row in users}
