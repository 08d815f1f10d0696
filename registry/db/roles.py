"""Who owns the schema and who serves: the database roles (docs/deployment.md, ADR 0015).

- ``ief_owner`` owns every schema object. Migrations and the operator's commands (``db``,
  ``services``, ``clients``, ``keys``, ``token``, ``audit``) connect as it.
- ``ief_server`` is a group role that owns nothing and holds only the grants a server process needs
  (migration 0007): no DELETE or TRUNCATE of what the triggers keep, no ALTER (so no disabling a
  trigger), no writing history rows. Server processes (``serve``, ``worker``) log in as a member of
  it: ``ief_app`` in the embedded cluster.

With an external database, ``IEF_DATABASE_URL`` is the server's role and ``IEF_DATABASE_OWNER_URL``
the owner's; without the latter one role does both, as before the roles were split.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

if TYPE_CHECKING:
    from registry.config import Settings

__all__ = (
    "OWNER_ROLE",
    "SERVER_LOGIN",
    "SERVER_ROLE",
    "as_role",
    "owner_database_url",
    "prepare_roles",
    "server_database_url",
)

OWNER_ROLE = "ief_owner"
SERVER_ROLE = "ief_server"
SERVER_LOGIN = "ief_app"
"""The embedded cluster's login role for server processes, a member of ``SERVER_ROLE``."""

_PREPARE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
        CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVER_ROLE}') THEN
        CREATE ROLE {SERVER_ROLE} NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVER_LOGIN}') THEN
        CREATE ROLE {SERVER_LOGIN} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
            IN ROLE {SERVER_ROLE};
    END IF;
END $$;

DO $$
DECLARE
    item record;
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO {OWNER_ROLE}', current_database());
    -- What the bootstrap superuser created before the roles were split (0001-0006) goes to the owner;
    -- a sequence that belongs to a column follows its table.
    FOR item IN
        SELECT c.oid::regclass AS name, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner <> '{OWNER_ROLE}'::regrole
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO {OWNER_ROLE}',
                       CASE item.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                         WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                       item.name);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS name
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proowner <> '{OWNER_ROLE}'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO {OWNER_ROLE}', item.name);
    END LOOP;
END $$;
"""


def as_role(url: str, role: str) -> str:
    """``url`` with its user replaced by ``role`` (its password dropped: the embedded cluster trusts its socket)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(role, safe='')}@{host}"))


def _execute(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # A thread of its own: the callers are synchronous start-up code, some of it inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def prepare_roles(superuser_url: str) -> None:
    """Create the roles and give the owner the database and its objects (idempotent; as a superuser)."""
    _execute(superuser_url, _PREPARE)


def owner_database_url(settings: Settings) -> str | None:
    """The URL migrations and the operator's commands use with an external database (None: embedded)."""
    return settings.database.owner_url or settings.database.url


def server_database_url(settings: Settings, owner_url: str) -> str:
    """The URL server processes use: ``IEF_DATABASE_URL``, else the embedded cluster's server login."""
    return settings.database.url or as_role(owner_url, SERVER_LOGIN)
