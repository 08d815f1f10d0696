"""Many distinct clients, each with its own key and its own token, as a deployment has them.

A national registry serves many gateways and consumers, each a client of its own (its own rate
bucket, its own cached client state, its own verified token). The benchmark registers ``count``
clients as ``ief-registry clients add --jwks`` stores them, straight into the build's database
with the columns every build since authentication has (a build compared with may be older than
this checkout's schema: no clearances, purposes or break-glass), and each gets its access token
from the server's own ``POST /auth/token`` with a ``private_key_jwt`` assertion (SMART Backend
Services), over real HTTP. Tokens from the token endpoint live ``auth.token_lifetime`` (300 s by
default), so a run asks again before each phase when its tokens are older than ``_REFRESH_AFTER``
seconds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx
import msgspec
from joserfc import jwt
from joserfc.jwk import RSAKey

from registry.auth.issuer import ASSERTION_TYPE

__all__ = ("BenchClients",)

_REFRESH_AFTER = 150.0
"""Seconds after which a run fetches new tokens (the server's default token lifetime is 300 s)."""
_ALG = "RS256"


@dataclass(slots=True)
class BenchClients:
    """``count`` clients of one server, bound to ``service_id``, with the scopes a gateway and a consumer need."""

    base_url: str
    client_ids: list[str]
    keys: list[RSAKey]
    scopes: str
    _tokens: list[str] = field(default_factory=list)
    _fetched_at: float = 0.0

    @classmethod
    async def register(
        cls, *, base_url: str, database_url: str, service_id: str, count: int,
        scopes: str = "system/Basic.cu system/Basic.rs",
    ) -> BenchClients:  # fmt: skip
        """Register ``count`` clients (a key pair each) in the server's database, as ``clients add`` stores them."""
        conn = await asyncpg.connect(database_url)
        try:
            client_ids, keys = [], []
            shared = RSAKey.generate_key(2048, private=True).as_dict(private=True)
            for number in range(count):
                # One RSA key is 60 ms to make; the clients differ by ID and kid, which is what the server keys on.
                key = RSAKey.import_key(shared, parameters={"kid": f"bench-{number}", "alg": _ALG, "use": "sig"})
                public = {k: v for k, v in key.as_dict(private=False).items() if k not in {"d"}}
                client_id = str(uuid.uuid4())
                await conn.execute(
                    "INSERT INTO clients (client_id, name, service_id, scopes, auth_method, jwks) "
                    "VALUES ($1, $2, $3, $4, 'private_key_jwt', $5::text::jsonb)",
                    client_id, f"bench client {number}", service_id, scopes.split(),
                    msgspec.json.encode({"keys": [public]}).decode(),
                )  # fmt: skip
                client_ids.append(client_id)
                keys.append(key)
        finally:
            await conn.close()
        return cls(base_url=base_url, client_ids=client_ids, keys=keys, scopes=scopes)

    def _assertion(self, number: int) -> str:
        now = int(time.time())
        client_id = self.client_ids[number]
        claims = {
            "iss": client_id, "sub": client_id, "aud": f"{self.base_url}/auth/token", "iat": now, "exp": now + 240,
            "jti": uuid.uuid4().hex,
        }  # fmt: skip
        key = self.keys[number]
        return jwt.encode({"alg": _ALG, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[_ALG])

    async def header_sets(self) -> list[dict[str, str]]:
        """One ``Authorization`` header per client, with tokens from ``/auth/token`` (fetched again when old)."""
        if not self._tokens or time.monotonic() - self._fetched_at > _REFRESH_AFTER:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
                tokens = []
                for number in range(len(self.client_ids)):
                    answer = await http.post(
                        "/auth/token",
                        data={
                            "grant_type": "client_credentials", "scope": self.scopes,
                            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self._assertion(number),
                        },
                    )  # fmt: skip
                    answer.raise_for_status()
                    tokens.append(str(answer.json()["access_token"]))
            self._tokens, self._fetched_at = tokens, time.monotonic()
        return [{"Authorization": f"Bearer {token}"} for token in self._tokens]
