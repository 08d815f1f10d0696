"""Building the authentication parts of one process from settings (the server's lifespan and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import msgspec

from registry.auth.assertions import RequesterAssertions
from registry.auth.clients import ClientService
from registry.auth.issuer import TokenEndpoint, TokenIssuer
from registry.auth.keys import KeyRing
from registry.auth.outbound import OutboundCredentials
from registry.auth.ratelimit import RateLimiter
from registry.auth.remote import JwksCache, new_http_client
from registry.auth.repository import AuthRepository
from registry.auth.verifier import Authenticator
from registry.outbound.egress import outbound_policy

if TYPE_CHECKING:
    from registry.config import Settings
    from registry.db.pool import Database
    from registry.db.queries import Queries

__all__ = ("AuthParts", "issuer_name", "key_ring", "start_auth")


def issuer_name(settings: Settings, service_id: str) -> str:
    """The built-in issuer's ``iss``: configured, else the public base URL, else ``urn:ief-registry:<service ID>``.

    The fallback depends only on the instance's service ID, so ``ief-registry token`` and every
    server process of one instance agree on it without further configuration.
    """
    if settings.auth.issuer:
        return settings.auth.issuer
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return f"urn:ief-registry:{service_id}"


@dataclass(slots=True)
class AuthParts:
    """Everything authentication needs in one process."""

    keys: KeyRing
    issuer: TokenIssuer
    clients: ClientService
    token_endpoint: TokenEndpoint
    authenticator: Authenticator
    failures: RateLimiter
    allow_client_secrets: bool
    outbound: OutboundCredentials
    http: httpx.AsyncClient
    assertions: RequesterAssertions

    async def close(self) -> None:
        """Close the outbound HTTP client."""
        await self.http.aclose()


def key_ring(db: Database, repository: AuthRepository, settings: Settings) -> KeyRing:
    """This instance's keys as the settings keep them (a retired key stays published until its tokens expire)."""
    auth = settings.auth
    keep = auth.max_token_lifetime + auth.leeway + auth.key_refresh_seconds
    return KeyRing(db, repository, refresh_seconds=auth.key_refresh_seconds, keep_seconds=keep)


async def start_auth(db: Database, queries: Queries, settings: Settings, service_id: str) -> AuthParts:
    """Create missing keys and the operator client, load the keys, and build the parts."""
    # Dev mode accepts client secrets; nothing turns authentication itself off.
    auth = msgspec.structs.replace(settings.auth, allow_client_secrets=True) if settings.dev else settings.auth
    repository = AuthRepository(queries)
    keys = key_ring(db, repository, settings)
    await keys.ensure()
    policy = outbound_policy(settings)
    clients = ClientService(db, repository, policy=policy)
    await clients.ensure_operator(service_id)
    name = issuer_name(settings, service_id)
    issuer = TokenIssuer(keys, issuer=name, audience=auth.audience or name, settings=auth)
    http = new_http_client(auth.http_timeout, policy)
    jwks = JwksCache(http, max_bytes=auth.jwks_max_bytes, cache_seconds=auth.jwks_cache_seconds)
    failures = RateLimiter(
        auth.failure_rate_per_second, auth.failure_burst, "too many failed authentications from this address"
    )
    authenticator = Authenticator(
        db=db, repository=repository, keys=keys, issuer=issuer.issuer, audience=issuer.audience, settings=auth,
        jwks=jwks, requests=RateLimiter(auth.rate_per_second, auth.rate_burst, "too many requests from this client"),
        failures=failures, policy=policy,
    )  # fmt: skip
    return AuthParts(
        keys=keys,
        issuer=issuer,
        clients=clients,
        token_endpoint=TokenEndpoint(db, repository, issuer, jwks, auth),
        authenticator=authenticator,
        failures=failures,
        allow_client_secrets=auth.allow_client_secrets,
        outbound=OutboundCredentials(keys, http, max_bytes=auth.jwks_max_bytes, policy=policy),
        http=http,
        assertions=RequesterAssertions(keys, issuer=name),
    )
