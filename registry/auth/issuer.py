"""The built-in issuer: signs access tokens and runs the client-credentials grant of ``/auth/token``.

Client authentication follows SMART Backend Services: a ``private_key_jwt`` client assertion
(``iss`` = ``sub`` = client ID, ``aud`` = this token endpoint's URL, ``exp`` at most five minutes
ahead, a ``jti`` never accepted twice, signed RS384/ES384/RS256/ES256 by a key of the client's
JWKS or its public key). authlib checks the assertion's claims (``JWTBearerClientAssertion``);
what it leaves to the server is done here: resolving keys asynchronously (JWKS URLs), the
five-minute cap, and the replay check in PostgreSQL (insert-or-fail, so it holds across processes).
Client secrets (``client_secret_basic`` and ``client_secret_post``) only when
``auth.allow_client_secrets`` is on.

Errors are authlib's RFC 6749 §5.2 errors (``invalid_client``, ``invalid_scope`` …): the token
endpoint answers in that format because OAuth client libraries parse it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from registry.auth.clients import public_key_from_pem, verify_secret
from registry.auth.remote import RemoteError
from registry.auth.requester import PRACTITIONER_CLAIM, PURPOSE_CLAIM
from registry.auth.scopes import may_hold
from registry.auth.tokens import MalformedToken, unverified
from registry.log import get_logger
from schemas.privacy import parse_hpii, parse_purpose
from schemas.types import InvalidValueError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from registry.auth.keys import KeyRing
    from registry.auth.remote import JwksCache
    from registry.auth.repository import AuthRepository, ClientRow
    from registry.config import AuthSettings
    from registry.db.pool import Database

__all__ = (
    "ASSERTION_ALGORITHMS",
    "ASSERTION_TYPE",
    "SERVICE_CLAIM",
    "IssuedToken",
    "TokenEndpoint",
    "TokenIssuer",
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384", "RS256", "ES256")
MAX_ASSERTION_SECONDS = 300
"""SMART Backend Services: a client assertion's ``exp`` is at most five minutes in the future."""
SERVICE_CLAIM = "service_id"
"""The access-token claim that carries the service ID the client is bound to."""

_log = get_logger("registry.auth")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token and what a token response says about it."""

    access_token: str
    expires_in: int
    scope: str
    expires_at: int


class TokenIssuer:
    """Signs access tokens with the active issuer key."""

    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, settings: AuthSettings) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._lifetime = settings.token_lifetime
        self._max_lifetime = settings.max_token_lifetime

    async def mint(
        self,
        *,
        client_id: str,
        service_id: str,
        scopes: Iterable[str],
        lifetime: int | None = None,
        stated: dict[str, str] | None = None,
    ) -> IssuedToken:
        """A signed access token for a client, bound to ``service_id``, granting ``scopes``; ``stated``
        adds the purpose of use and requesting practitioner the client asked for (already checked).

        ``lifetime`` defaults to ``auth.token_lifetime`` and is capped at ``auth.max_token_lifetime``.
        """
        seconds = min(lifetime or self._lifetime, self._max_lifetime)
        keys = await self.keys.fresh()
        now = int(time.time())
        scope = " ".join(dict.fromkeys(scopes))
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
            "scope": scope,
            SERVICE_CLAIM: service_id,
            **(stated or {}),
        }
        header = {"alg": keys.issuer.alg, "kid": keys.issuer.kid, "typ": "at+jwt"}
        token = jwt.encode(header, claims, keys.issuer, algorithms=[str(keys.issuer.alg)])
        return IssuedToken(access_token=token, expires_in=seconds, scope=scope, expires_at=now + seconds)


class _OAuthClient:
    """A stored client as authlib's client-authentication code expects it."""

    def __init__(self, row: ClientRow) -> None:
        self.row = row

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == "private_key_jwt" and self.row.auth_method == "private_key_jwt"


class _FormRequest:
    """The part of an OAuth request authlib's assertion check reads."""

    def __init__(self, form: dict[str, str]) -> None:
        self.form = form
        self.client: Any = None


class _ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]  # authlib ships no type hints
    """authlib's RFC 7523 client assertion check with our audiences, keys, algorithms and exp cap."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str], key: Key | KeySet, leeway: int) -> None:
        super().__init__(leeway=leeway)
        self._audiences = audiences
        self._key = key
        self.jti: str | None = None
        self.expires_at: int = 0

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, _client: Any) -> Key | KeySet:
        return self._key

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        # Recorded here, checked against PostgreSQL once the signature and claims hold.
        self.jti = str(jti)
        self.expires_at = int(claims["exp"])
        return isinstance(jti, str) and 0 < len(jti) <= 255

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=f"the client assertion does not verify ({exc.error})") from None
        except (ValueError, TypeError):  # its shape was checked (registry.auth.tokens); anything left is a bad one
            raise InvalidClientError(description="the client assertion does not verify") from None
        self.verify_claims(token.claims)
        if int(token.claims["exp"]) > time.time() + MAX_ASSERTION_SECONDS + self.leeway:
            raise InvalidClientError(description="the client assertion expires more than 5 minutes ahead")
        return token.claims


def _stated(form: dict[str, str], client: ClientRow) -> dict[str, str]:
    """The purpose of use and requesting practitioner a token request asks to be stated in the token
    (form parameters ``purpose_of_use``, ``requesting_practitioner``), checked against the client.

    Raises:
        InvalidRequestError: not a PurposeOfUse code, or not an HPI-I.
        InvalidScopeError: a purpose the client is not registered to state.
    """
    stated: dict[str, str] = {}
    purpose, practitioner = form.get(PURPOSE_CLAIM), form.get(PRACTITIONER_CLAIM)
    try:
        if purpose is not None:
            stated[PURPOSE_CLAIM] = parse_purpose(purpose)
        if practitioner is not None:
            stated[PRACTITIONER_CLAIM] = parse_hpii(practitioner)
    except InvalidValueError as exc:
        raise InvalidRequestError(description=str(exc)) from None
    if client.purposes and stated.get(PURPOSE_CLAIM, client.purposes[0]) not in client.purposes:
        raise InvalidScopeError(description=f"this client is not registered to state the purpose {purpose}")
    return stated


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClientError(description="malformed Basic credentials", status_code=401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClientError(description="malformed Basic credentials", status_code=401)
    return unquote(client_id), unquote(secret)


class TokenEndpoint:
    """The client-credentials grant: authenticate the client, check the scopes, sign a token."""

    def __init__(
        self,
        db: Database,
        repository: AuthRepository,
        issuer: TokenIssuer,
        jwks: JwksCache,
        settings: AuthSettings,
    ) -> None:
        self._db = db
        self._repo = repository
        self._issuer = issuer
        self._jwks = jwks
        self._settings = settings

    async def grant(self, form: dict[str, str], *, authorization: str | None, token_urls: list[str]) -> IssuedToken:
        """Answer one token request.

        Raises:
            OAuth2Error: an RFC 6749 §5.2 error (authlib's classes).
        """
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequestError(description="grant_type is required")
        if grant_type != "client_credentials":
            raise UnsupportedGrantTypeError(grant_type)
        client = await self._authenticate(form, authorization, token_urls)
        requested = form.get("scope", "").split()
        if not requested:
            raise InvalidScopeError(description="scope is required")
        registered = frozenset(client.scopes)
        refused = [scope for scope in requested if not may_hold(registered, scope)]
        if refused:
            raise InvalidScopeError(description=f"not registered for this client: {' '.join(refused)}")
        stated = _stated(form, client)
        token = await self._issuer.mint(
            client_id=client.client_id, service_id=client.service_id, scopes=requested, stated=stated
        )
        _log.info("token_issued", client_id=client.client_id, scope=token.scope, expires_in=token.expires_in)
        return token

    async def _authenticate(self, form: dict[str, str], authorization: str | None, token_urls: list[str]) -> ClientRow:
        assertion_type = form.get("client_assertion_type")
        if assertion_type is not None or "client_assertion" in form:
            if assertion_type != ASSERTION_TYPE or not form.get("client_assertion"):
                raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
            return await self._by_assertion(form, token_urls)
        basic = _basic_credentials(authorization)
        if basic is not None or "client_secret" in form:
            return await self._by_secret(form, basic)
        raise InvalidClientError(description="no client authentication: send a client assertion (private_key_jwt)")

    async def _client(self, client_id: str, status_code: int = 400) -> ClientRow:
        # From the primary: a replica's lag must not stretch a disabled client's access or hide a new key.
        async with self._db.writer() as conn:
            client = await self._repo.get_client(conn, client_id)
        if client is None or not client.enabled:
            raise InvalidClientError(description="unknown or disabled client", status_code=status_code)
        return client

    async def _by_assertion(self, form: dict[str, str], token_urls: list[str]) -> ClientRow:
        try:
            parts = unverified(form["client_assertion"])
        except MalformedToken as exc:
            raise InvalidClientError(description=f"the client assertion is malformed: {exc}") from None
        headers, claims = parts.header, parts.claims
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidClientError(description="the client assertion has no sub")
        client = await self._client(client_id)
        if client.auth_method != "private_key_jwt":
            raise UnauthorizedClientError(description="this client does not authenticate with private_key_jwt")
        kid = headers.get("kid")
        checker = _ClientAssertion(token_urls, await self._client_keys(client, kid), self._settings.leeway)
        checker(lambda cid: _OAuthClient(client) if cid == client.client_id else None, _FormRequest(form))
        assert checker.jti is not None
        async with self._db.writer() as conn:
            fresh = await self._repo.accept_assertion(
                conn,
                client.client_id,
                checker.jti,
                datetime.fromtimestamp(checker.expires_at + self._settings.leeway, UTC),
            )
        if not fresh:
            _log.warning("assertion_replayed", client_id=client.client_id)
            raise InvalidClientError(description="this client assertion (jti) was used before")
        return client

    async def _client_keys(self, client: ClientRow, kid: Any) -> Key | KeySet:
        if client.jwks is not None:
            return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        if client.public_key_pem is not None:
            return public_key_from_pem(client.public_key_pem)  # one key: whatever kid the header names
        assert client.jwks_url is not None
        try:
            return await self._jwks.get(client.jwks_url, kid if isinstance(kid, str) else None)
        except RemoteError as exc:
            _log.warning("client_jwks_unavailable", client_id=client.client_id, reason=str(exc))
            raise InvalidClientError(description="the client's JWKS could not be fetched") from None

    async def _by_secret(self, form: dict[str, str], basic: tuple[str, str] | None) -> ClientRow:
        status = 401 if basic is not None else 400
        if not self._settings.allow_client_secrets:
            raise InvalidClientError(
                description="client secrets are not accepted here; use private_key_jwt", status_code=status
            )
        if basic is not None and ("client_secret" in form or "client_id" in form):
            raise InvalidRequestError(description="use one client authentication method, not two")
        client_id, secret = basic if basic is not None else (form.get("client_id", ""), form.get("client_secret", ""))
        client = await self._client(client_id, status)
        if client.auth_method != "client_secret" or client.secret_hash is None:
            raise InvalidClientError(description="this client does not authenticate with a secret", status_code=status)
        if not await asyncio.to_thread(verify_secret, secret, client.secret_hash):  # scrypt: off the event loop
            raise InvalidClientError(description="wrong client secret", status_code=status)
        return client
