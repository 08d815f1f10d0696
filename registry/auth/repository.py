"""Storage of keys, clients and accepted client assertions: named queries in, plain values out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from registry.db.errors import translate_db_errors

if TYPE_CHECKING:
    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries

__all__ = ("AuthRepository", "ClientRow", "ClientState", "KeyRow")


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One signing key as stored."""

    kid: str
    purpose: str
    alg: str
    private_pem: str
    created_at: datetime
    retired_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClientRow:
    """One client as stored (the secret only as its salted hash)."""

    client_id: str
    name: str
    service_id: str
    scopes: tuple[str, ...]
    auth_method: str
    jwks: dict[str, Any] | None
    jwks_url: str | None
    public_key_pem: str | None
    secret_hash: str | None
    status: str
    rate_per_second: float | None
    created_at: datetime
    updated_at: datetime
    clearances: tuple[str, ...] = ()
    break_glass: bool = False
    purposes: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether the client may get and use tokens."""
        return self.status == "enabled"


@dataclass(frozen=True, slots=True)
class ClientState:
    """What the resource server re-checks about a client while its tokens are valid."""

    enabled: bool
    service_id: str
    scopes: frozenset[str]
    rate_per_second: float | None
    clearances: frozenset[str] = frozenset()
    break_glass: bool = False
    purposes: frozenset[str] = frozenset()


def _client(row: asyncpg.Record) -> ClientRow:
    jwks = row["jwks"]
    return ClientRow(
        client_id=row["client_id"],
        name=row["name"],
        service_id=row["service_id"],
        scopes=tuple(row["scopes"]),
        auth_method=row["auth_method"],
        jwks=json.loads(jwks) if isinstance(jwks, str) else jwks,
        jwks_url=row["jwks_url"],
        public_key_pem=row["public_key_pem"],
        secret_hash=row["secret_hash"],
        status=row["status"],
        rate_per_second=row["rate_per_second"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        clearances=tuple(row["clearances"]),
        break_glass=row["break_glass"],
        purposes=tuple(row["purposes"]),
    )


class AuthRepository:
    """The only caller of ``sql/queries/auth.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def live_keys(self, conn: Connection) -> list[KeyRow]:
        """Active keys and retired keys not yet expired, newest first within each purpose."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["live_keys"])
        return [KeyRow(**dict(row)) for row in rows]

    async def add_active_key(self, conn: Connection, *, kid: str, purpose: str, alg: str, private_pem: str) -> None:
        """Add the active key of a purpose unless one exists."""
        with translate_db_errors():
            await conn.execute(self._q["add_active_key"], kid, purpose, alg, private_pem)

    async def retire_active_key(self, conn: Connection, purpose: str, keep_seconds: float) -> None:
        """Retire the active key of a purpose, keeping it published for ``keep_seconds``."""
        with translate_db_errors():
            await conn.execute(self._q["retire_active_key"], purpose, keep_seconds)

    async def add_client(
        self,
        conn: Connection,
        *,
        client_id: str,
        name: str,
        service_id: str,
        scopes: list[str],
        auth_method: str,
        jwks: dict[str, Any] | None,
        jwks_url: str | None,
        public_key_pem: str | None,
        secret_hash: str | None,
        rate_per_second: float | None,
        clearances: list[str],
        break_glass: bool,
        purposes: list[str],
    ) -> ClientRow:
        """Register a client."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["add_client"], client_id, name, service_id, scopes, auth_method,
                json.dumps(jwks) if jwks is not None else None, jwks_url, public_key_pem, secret_hash,
                rate_per_second, clearances, break_glass, purposes,
            )  # fmt: skip
        assert row is not None
        return _client(row)

    async def add_client_if_absent(
        self, conn: Connection, *, client_id: str, name: str, service_id: str, scopes: list[str]
    ) -> None:
        """Register a client that cannot authenticate at the token endpoint, unless it exists."""
        with translate_db_errors():
            await conn.execute(self._q["add_client_if_absent"], client_id, name, service_id, scopes)

    async def get_client(self, conn: Connection, client_id: str) -> ClientRow | None:
        """One client, or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_client"], client_id)
        return _client(row) if row else None

    async def list_clients(self, conn: Connection) -> list[ClientRow]:
        """Every client."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["list_clients"])
        return [_client(row) for row in rows]

    async def set_client_status(self, conn: Connection, client_id: str, status: str) -> ClientRow | None:
        """Enable or disable a client; None when it does not exist."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["set_client_status"], client_id, status)
        return _client(row) if row else None

    async def set_client_credentials(
        self,
        conn: Connection,
        client_id: str,
        *,
        auth_method: str,
        jwks: dict[str, Any] | None,
        jwks_url: str | None,
        public_key_pem: str | None,
        secret_hash: str | None,
    ) -> ClientRow | None:
        """Replace a client's authentication material; None when it does not exist."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["set_client_credentials"], client_id, auth_method,
                json.dumps(jwks) if jwks is not None else None, jwks_url, public_key_pem, secret_hash,
            )  # fmt: skip
        return _client(row) if row else None

    async def set_client_privacy(
        self,
        conn: Connection,
        client_id: str,
        *,
        clearances: list[str] | None,
        break_glass: bool | None,
        purposes: list[str] | None,
    ) -> ClientRow | None:
        """Change a client's clearances, break-glass permission or purposes (None: unchanged); None when absent."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["set_client_privacy"], client_id, clearances, break_glass, purposes)
        return _client(row) if row else None

    async def client_state(self, conn: Connection, client_id: str) -> ClientState | None:
        """The parts of a client the resource server re-checks; None when it does not exist."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["client_state"], client_id)
        if row is None:
            return None
        return ClientState(
            enabled=row["status"] == "enabled",
            service_id=row["service_id"],
            scopes=frozenset(row["scopes"]),
            rate_per_second=row["rate_per_second"],
            clearances=frozenset(row["clearances"]),
            break_glass=row["break_glass"],
            purposes=frozenset(row["purposes"]),
        )

    async def accept_assertion(self, conn: Connection, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record an assertion's jti; False when it was used before. Expired entries are purged first."""
        with translate_db_errors():
            async with conn.transaction():
                await conn.execute(self._q["purge_assertions"])
                row = await conn.fetchrow(self._q["accept_assertion"], client_id, jti, expires_at)
        return row is not None
