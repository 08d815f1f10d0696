"""The resource server: a bearer token in, a ``Principal`` out, or ``Unauthenticated``.

Tokens are accepted from the built-in issuer and from the trusted issuers of
``auth.trusted_issuers``. Each token's signature and claims are verified once; the resulting
``Principal`` is remembered by token until it expires (a bounded dictionary), so a request with
a known token costs a dictionary look-up. Whether its client is still enabled (and its rate) is
re-read at most every ``auth.client_cache_seconds``.

Verification: an explicit algorithm allow-list per issuer (asymmetric only: never ``none``, never
HS*), ``iss`` matched against the trusted issuers, ``aud``, ``exp``/``nbf``/``iat`` with
``auth.leeway`` seconds of skew.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from registry import errors
from registry.auth.issuer import SERVICE_CLAIM
from registry.auth.remote import RemoteError, parse_jwks
from registry.auth.requester import PRACTITIONER_CLAIM, PURPOSE_CLAIM
from registry.auth.scopes import Principal, may_hold
from registry.auth.tokens import MalformedToken, unverified
from registry.log import get_logger
from registry.outbound.egress import AddressRefused
from schemas.privacy import parse_hpii, parse_purpose
from schemas.types import InvalidValueError

if TYPE_CHECKING:
    from registry.auth.keys import KeyRing
    from registry.auth.ratelimit import RateLimiter
    from registry.auth.remote import JwksCache
    from registry.auth.repository import AuthRepository, ClientState
    from registry.config import AuthSettings, TrustedIssuer
    from registry.db.pool import Database
    from registry.outbound.egress import AddressPolicy

__all__ = ("Authenticator",)

_log = get_logger("registry.auth")
_BUILT_IN_ALGORITHMS: tuple[str, ...] = ("RS256",)
_CLAIM_REFUSALS = {
    "nbf": "the token is not valid yet",
    "iat": "the token was issued in the future",
    "aud": "the token is meant for another audience",
    "iss": "the token's issuer is not trusted here",
}


class _Source(Protocol):
    """An issuer whose tokens are accepted."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...]

    async def key_set(self, kid: str | None) -> KeySet: ...

    async def principal(self, claims: dict[str, Any], clients: _Clients) -> Principal: ...


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope", claims.get("scp"))
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [s for s in scope if isinstance(s, str)]
    return []


def _expiry(claims: dict[str, Any]) -> int:
    return int(claims["exp"])


def _stated(claims: dict[str, Any]) -> tuple[str | None, str | None]:
    """The purpose of use and the requesting practitioner a token states (claims ``purpose_of_use``,
    ``requesting_practitioner``), checked.

    Raises:
        Unauthenticated: a claim that is not a PurposeOfUse code or an HPI-I.
    """
    stated: list[str | None] = []
    for claim, parse in ((PURPOSE_CLAIM, parse_purpose), (PRACTITIONER_CLAIM, parse_hpii)):
        value = claims.get(claim)
        try:
            stated.append(None if value is None else parse(value if isinstance(value, str) else ""))
        except InvalidValueError as exc:
            raise errors.Unauthenticated(f"the token's {claim} claim is not acceptable: {exc}") from None
    return stated[0], stated[1]


class _BuiltIn:
    """This instance's own issuer: keys from the database, the client and binding from the token."""

    algorithms: tuple[str, ...] = _BUILT_IN_ALGORITHMS

    def __init__(self, issuer: str, audience: str, keys: KeyRing) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = keys

    async def key_set(self, kid: str | None) -> KeySet:
        return (await self._keys.reload_for(kid or "")).issuer_keys

    async def principal(self, claims: dict[str, Any], clients: _Clients) -> Principal:
        client_id, service_id = claims.get("sub"), claims.get(SERVICE_CLAIM)
        if not isinstance(client_id, str) or not isinstance(service_id, str):
            raise errors.Unauthenticated("the token lacks its client or service binding")
        purpose, practitioner = _stated(claims)
        return Principal(
            client_id=client_id,
            service_id=service_id,
            scopes=frozenset(_scopes(claims)),
            issuer=self.issuer,
            expires_at=_expiry(claims),
            token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
            purpose=purpose,
            practitioner=practitioner,
        )


class _External:
    """A trusted outside authority: keys from its JWKS, its client IDs mapped to local clients."""

    def __init__(self, config: TrustedIssuer, jwks: JwksCache, *, policy: AddressPolicy) -> None:
        if config.jwks_url:
            try:
                policy.check_url(config.jwks_url, f"the JWKS URL of trusted issuer {config.issuer!r}")
            except AddressRefused as exc:
                raise errors.InvalidInput(str(exc)) from None
        self.issuer = config.issuer
        self.audience = config.audience
        self.algorithms = tuple(config.algorithms)
        self._config = config
        self._jwks = jwks
        self._file_keys: KeySet | None = None

    async def key_set(self, kid: str | None) -> KeySet:
        if self._config.jwks_url:
            try:
                return await self._jwks.get(self._config.jwks_url, kid)
            except RemoteError as exc:
                _log.warning("issuer_jwks_unavailable", issuer=self.issuer, reason=str(exc))
                raise errors.DependencyUnavailable("the token's issuer keys cannot be fetched now") from None
        if self._file_keys is None or (kid is not None and kid not in {key.kid for key in self._file_keys}):
            assert self._config.jwks_file is not None
            path = Path(self._config.jwks_file)
            try:
                # A small local file, read only at first use and on an unknown kid.
                self._file_keys = parse_jwks(msgspec.json.decode(path.read_bytes()), str(path))  # noqa: ASYNC240
            except (OSError, msgspec.DecodeError, RemoteError) as exc:
                _log.warning("issuer_jwks_unavailable", issuer=self.issuer, reason=str(exc))
                raise errors.DependencyUnavailable("the token's issuer keys cannot be read now") from None
        return self._file_keys

    async def principal(self, claims: dict[str, Any], clients: _Clients) -> Principal:
        external_id = claims.get(self._config.client_id_claim)
        local_id = self._config.clients.get(external_id) if isinstance(external_id, str) else None
        if local_id is None:
            raise errors.Unauthenticated("the token's client is not mapped to a client of this registry")
        state = await clients.state(local_id)
        if state is None:
            raise errors.Unauthenticated("the token's client is not mapped to a client of this registry")
        purpose, practitioner = _stated(claims)
        return Principal(
            client_id=local_id,
            service_id=state.service_id,
            scopes=frozenset(s for s in _scopes(claims) if may_hold(state.scopes, s)),
            issuer=self.issuer,
            expires_at=_expiry(claims),
            token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
            purpose=purpose,
            practitioner=practitioner,
        )


class _Clients:
    """Client states read from the database, remembered for ``auth.client_cache_seconds``."""

    def __init__(self, db: Database, repository: AuthRepository, ttl: float) -> None:
        self._db = db
        self._repo = repository
        self._ttl = ttl
        self._states: dict[str, tuple[ClientState | None, float]] = {}

    async def state(self, client_id: str) -> ClientState | None:
        known = self._states.get(client_id)
        now = time.monotonic()
        if known is not None and now - known[1] < self._ttl:
            return known[0]
        # From the primary: a replica's lag must not stretch a disabled client's access or hide a new key.
        async with self._db.writer() as conn:
            state = await self._repo.client_state(conn, client_id)
        if self._ttl > 0:
            if len(self._states) > 10_000:
                self._states.clear()
            self._states[client_id] = (state, now)
        return state


class Authenticator:
    """Turns the ``Authorization`` header of a request into a ``Principal``."""

    def __init__(
        self,
        *,
        db: Database,
        repository: AuthRepository,
        keys: KeyRing,
        issuer: str,
        audience: str,
        settings: AuthSettings,
        jwks: JwksCache,
        requests: RateLimiter,
        failures: RateLimiter,
        policy: AddressPolicy,
    ) -> None:
        sources: list[_Source] = [_BuiltIn(issuer, audience, keys)]
        sources += [_External(config, jwks, policy=policy) for config in settings.trusted_issuers]
        self._sources: dict[str, _Source] = {source.issuer: source for source in sources}
        self._clients = _Clients(db, repository, settings.client_cache_seconds)
        self._leeway = settings.leeway
        self._cache_size = settings.token_cache_size
        self._verified: dict[str, Principal] = {}
        self._requests = requests
        self._failures = failures

    async def principal(self, authorization: str | None, address: str | None) -> Principal:
        """The caller of a request: verified token, enabled client, within its rate.

        Raises:
            Unauthenticated: no bearer token, or one that does not verify, has expired, or belongs
                to a disabled or unknown client.
            RateLimited: the client is over its rate, or the address over its failed-authentication rate.
        """
        try:
            token, principal = await self._check(authorization)
        except errors.Unauthenticated as exc:
            self._failures.take(address or "(unknown)")
            _log.info("auth_refused", reason=exc.message)
            raise
        state = await self._clients.state(principal.client_id)
        if state is None or not state.enabled:
            self._failures.take(address or "(unknown)")
            _log.info("auth_refused", reason="client unknown or disabled", client_id=principal.client_id)
            raise errors.Unauthenticated("the token's client is unknown or disabled")
        self._requests.take(principal.client_id, state.rate_per_second)
        if (principal.clearances, principal.break_glass, principal.purposes) != (
            state.clearances,
            state.break_glass,
            state.purposes,
        ):  # what the client's registration grants now (re-read with its state), kept for its next request
            principal = replace(
                principal, clearances=state.clearances, break_glass=state.break_glass, purposes=state.purposes
            )
            self._verified[token] = principal
        return principal

    async def _check(self, authorization: str | None) -> tuple[str, Principal]:
        if not authorization or authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            raise errors.Unauthenticated("this needs a bearer token (Authorization: Bearer …)", token_sent=False)
        token = authorization[7:].strip()
        principal = self._verified.get(token)
        if principal is None:
            principal = await self._verify(token)
            if len(self._verified) >= self._cache_size:
                self._evict()
            self._verified[token] = principal
        elif principal.expires_at + self._leeway <= time.time():
            del self._verified[token]
            raise errors.Unauthenticated("the token has expired", code=errors.ErrorCode.TOKEN_EXPIRED)
        return token, principal

    def _evict(self) -> None:
        now = time.time()
        for token, principal in list(self._verified.items()):
            if principal.expires_at + self._leeway <= now:
                del self._verified[token]
        while len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]

    async def _verify(self, token: str) -> Principal:
        try:
            parts = unverified(token)
        except MalformedToken as exc:
            raise errors.Unauthenticated(str(exc)) from None
        header, claims = parts.header, parts.claims
        source = self._sources.get(claims.get("iss") or "")
        if source is None:
            raise errors.Unauthenticated("the token's issuer is not trusted here")
        alg = header["alg"]
        if alg not in source.algorithms:
            raise errors.Unauthenticated(f"the signature algorithm {alg[:32]!r} is not accepted")
        try:
            verified = jwt.decode(token, await source.key_set(header.get("kid")), algorithms=list(source.algorithms))
        except (JoseError, ValueError, TypeError):  # the shapes were checked; anything left is a bad token
            raise errors.Unauthenticated("the token's signature does not verify") from None
        rules = jwt.JWTClaimsRegistry(
            leeway=self._leeway,
            iss={"essential": True, "value": source.issuer},
            aud={"essential": True, "value": source.audience},
            exp={"essential": True},
        )
        try:
            rules.validate(verified.claims)
        except ExpiredTokenError:
            raise errors.Unauthenticated("the token has expired", code=errors.ErrorCode.TOKEN_EXPIRED) from None
        except (InvalidClaimError, MissingClaimError) as exc:
            reason = _CLAIM_REFUSALS.get(exc.claim, f"the token's {exc.claim} claim is missing or not acceptable here")
            raise errors.Unauthenticated(reason) from None
        except (JoseError, ValueError, TypeError):
            raise errors.Unauthenticated("the token's claims are not acceptable") from None
        return await source.principal(verified.claims, self._clients)
