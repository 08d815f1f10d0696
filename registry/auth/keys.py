"""This instance's key pairs, kept in PostgreSQL: the built-in issuer's signing keys and the outbound key.

Every server process reads the same keys from the database, so any process verifies what another
signed (DESIGN §3: state lives in PostgreSQL only). Keys are created on first start; ``keys
rotate`` makes a new active key and retires the old one, which stays published in
``/.well-known/jwks.json`` (and trusted) until every token it can have signed has expired.

Importing a private key checks it (about 50-80 ms of CPU for RSA 2048), so each key is imported
once per process and kept by ``kid`` (whichever ``KeyRing`` reads it: a server and a command, or the
servers of a test, share the imports): re-reading the keys (every ``auth.key_refresh_seconds``)
costs a query, not an import per key.

Purposes:

- ``issuer``: signs access tokens (RS256: verification is the cheap operation of RSA);
- ``outbound``: signs this instance's client assertions to peers and gateways (RS384, as SMART
  Backend Services recommends);
- ``requester``: signs the ``IEF-Requester`` assertion the broker sends each gateway it asks (ES256
  on P-256: one signature per gateway per search, about a sixth of an RSA signature's CPU;
  docs/adr/0027-identity-carried-to-gateways.md);
- ``audit``: signs the audit trail's monthly checkpoints (RS256). Not in ``/.well-known/jwks.json``
  (nothing it signs is a token); its public halves are published with the checkpoints, and a
  retired one is never forgotten: old checkpoints are verified with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from registry.log import get_logger

if TYPE_CHECKING:
    from registry.auth.repository import AuthRepository, KeyRow
    from registry.db.pool import Database

__all__ = ("AUDIT", "ISSUER", "OUTBOUND", "PURPOSES", "REQUESTER", "KeyRing", "Keys")

ISSUER = "issuer"
OUTBOUND = "outbound"
REQUESTER = "requester"
AUDIT = "audit"
_ALG = {ISSUER: "RS256", OUTBOUND: "RS384", REQUESTER: "ES256", AUDIT: "RS256"}
PURPOSES = tuple(_ALG)
_RSA_BITS = 2048
_UNKNOWN_KID_RELOAD_SECONDS = 1.0
_log = get_logger("registry.auth.keys")


@dataclass(frozen=True, slots=True)
class _Imported:
    """One key as imported: the private key and its public half."""

    pem: str
    private: RSAKey | ECKey
    public: RSAKey | ECKey


_IMPORTED: dict[str, _Imported] = {}
"""Every key imported in this process, by ``kid`` (a kid is the thumbprint of its key)."""
_IMPORTED_MAX = 256
"""Forget them all past this many (a process reads a handful of keys: its active ones and those they replaced)."""


def _imported(row: KeyRow) -> _Imported:
    """The key of ``row``, imported once per process (again only if the row is not what was imported)."""
    known = _IMPORTED.get(row.kid)
    if known is not None and known.pem == row.private_pem and known.private.alg == row.alg:
        return known
    kind: type[RSAKey] | type[ECKey] = ECKey if row.alg.startswith("ES") else RSAKey
    private = kind.import_key(row.private_pem, parameters={"kid": row.kid, "alg": row.alg, "use": "sig"})
    imported = _Imported(row.private_pem, private, kind.import_key(private.as_dict(private=False)))
    if len(_IMPORTED) >= _IMPORTED_MAX:
        _IMPORTED.clear()
    _IMPORTED[row.kid] = imported
    return imported


def _rsa(key: RSAKey | ECKey) -> RSAKey:
    """``key``, which its purpose's algorithm (RS256 for ``audit``) says is an RSA key."""
    if not isinstance(key, RSAKey):
        raise RuntimeError(f"the key {key.kid} is not an RSA key")
    return key


@dataclass(frozen=True, slots=True)
class Keys:
    """One consistent view of the keys: what signs now, and what verifies and is published."""

    issuer: RSAKey | ECKey
    """The active issuer key (signs access tokens)."""
    outbound: RSAKey | ECKey
    """The active outbound key (signs this instance's client assertions)."""
    requester: RSAKey | ECKey
    """The active requester key (signs the IEF-Requester assertions sent to gateways)."""
    audit: RSAKey
    """The active audit key (signs the audit trail's checkpoints)."""
    issuer_keys: KeySet
    """Every live issuer key, public halves only: what the built-in issuer's tokens verify against."""
    jwks: dict[str, Any]
    """The published JWKS: live issuer, outbound and requester keys (public halves, distinct kids; no audit key)."""
    loaded_at: float = field(default_factory=time.monotonic)


class KeyRing:
    """The keys of this instance as last read from the database, re-read when stale."""

    def __init__(
        self, db: Database, repository: AuthRepository, *, refresh_seconds: float, keep_seconds: float
    ) -> None:
        self._db = db
        self._repo = repository
        self._refresh = refresh_seconds
        self._keep = keep_seconds
        self._keys: Keys | None = None

    @property
    def keys(self) -> Keys:
        """The keys as last loaded (``ensure()`` must have run)."""
        assert self._keys is not None, "KeyRing.ensure() runs at start-up"
        return self._keys

    async def ensure(self) -> Keys:
        """Create the active issuer, outbound, requester and audit keys when missing, then load every live key."""
        async with self._db.writer() as conn:
            existing = {row.purpose for row in await self._repo.live_keys(conn) if row.retired_at is None}
            for purpose in PURPOSES:
                if purpose not in existing:
                    kid = await self._add(conn, purpose)
                    _log.info("key_created", purpose=purpose, kid=kid)
        return await self.load()

    async def load(self) -> Keys:
        """Read every live key from the database."""
        # From the primary: a replica's lag must not stretch a disabled client's access or hide a new key.
        async with self._db.writer() as conn:
            rows = await self._repo.live_keys(conn)
        active = {row.purpose: row for row in rows if row.retired_at is None}
        missing = set(PURPOSES) - set(active)
        if missing:
            raise RuntimeError(
                f"no active {', '.join(sorted(missing))} key: run `ief-registry db upgrade` or start `serve`"
            )
        imported = {row.kid: _imported(row) for row in rows}
        issuer_public: list[Key] = [imported[row.kid].public for row in rows if row.purpose == ISSUER]
        self._keys = Keys(
            issuer=imported[active[ISSUER].kid].private,
            outbound=imported[active[OUTBOUND].kid].private,
            requester=imported[active[REQUESTER].kid].private,
            audit=_rsa(imported[active[AUDIT].kid].private),
            issuer_keys=KeySet(issuer_public),
            jwks={"keys": [imported[row.kid].private.as_dict(private=False) for row in rows if row.purpose != AUDIT]},
        )
        return self._keys

    async def fresh(self) -> Keys:
        """The keys, re-read first when they are older than the refresh interval."""
        if self._keys is None or time.monotonic() - self._keys.loaded_at >= self._refresh:
            return await self.load()
        return self._keys

    async def reload_for(self, kid: str) -> Keys:
        """Re-read the keys because a token names an unknown ``kid`` (at most once a second)."""
        current = self.keys
        if (
            kid in {key.kid for key in current.issuer_keys}
            or time.monotonic() - current.loaded_at < _UNKNOWN_KID_RELOAD_SECONDS
        ):
            return current
        return await self.load()

    async def rotate(self, purpose: str = ISSUER) -> str:
        """Make a new active key of ``purpose``; the old one stays published until its tokens expire."""
        if purpose not in _ALG:
            raise ValueError(f"unknown key purpose {purpose!r}")
        async with self._db.writer() as conn, conn.transaction():
            await self._repo.retire_active_key(conn, purpose, self._keep)
            kid = await self._add(conn, purpose)
        _log.info("key_rotated", purpose=purpose, kid=kid, old_key_published_seconds=self._keep)
        await self.load()
        return kid

    async def _add(self, conn: Any, purpose: str) -> str:
        key: RSAKey | ECKey = (
            ECKey.generate_key("P-256", private=True)
            if _ALG[purpose].startswith("ES")
            else RSAKey.generate_key(_RSA_BITS, private=True)
        )
        kid = key.thumbprint()  # of the key just made: importing its PEM again would check it again
        pem = key.as_pem(private=True).decode()
        await self._repo.add_active_key(conn, kid=kid, purpose=purpose, alg=_ALG[purpose], private_pem=pem)
        return kid
