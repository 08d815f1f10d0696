"""This instance's credentials when it calls a member service (a peer registry or a gateway).

``OutboundCredentials.authorization(service, scopes)`` gives the ``Authorization`` header value:

- a service added with ``--bearer-token-file FILE``: the token in that file (read on each call, so
  replacing the file takes effect at once);
- a service added with ``--client-id ID``: SMART Backend Services with ``private_key_jwt``. The
  token endpoint is the one the operator configured (``--token-endpoint``), else the one the
  service announces in ``{base}/.well-known/smart-configuration``, which must then be on the
  service's own origin (scheme, host and port): a member must not choose where this registry
  sends its signed client assertions. A client assertion is signed with this instance's outbound
  key (published in its own ``/.well-known/jwks.json``); the access token is cached per service
  and scope set until shortly before it expires, and only one refresh per cache key runs at a time.

Every call goes through the auth HTTP client (``registry.outbound.egress``: the address policy, TLS 1.2+),
with its timeouts and a size limit; any failure is ``OutboundAuthError`` (a
``DependencyUnavailable``) naming the service and what went wrong in words fit for a consumer:
the URLs it tried and whatever the other side answered go to this registry's log
(``outbound_auth_failed``), never into an answer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from authlib.oauth2.rfc7523 import private_key_jwt_sign

from registry.auth.issuer import ASSERTION_TYPE, MAX_ASSERTION_SECONDS
from registry.auth.remote import RemoteError, fetch_json
from registry.errors import OutboundAuthError
from registry.log import get_logger
from registry.outbound.egress import AddressRefused

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpx

    from registry.auth.keys import KeyRing
    from registry.outbound.egress import AddressPolicy

__all__ = ("OutboundCredentials", "OutboundTarget")

_DISCOVERY_SECONDS = 3600.0
_MAX_TOKEN_FILE_BYTES = 16_384
_log = get_logger("registry.auth.outbound")


class OutboundTarget(Protocol):
    """What ``OutboundCredentials`` needs of a member service (``schemas.services.Service`` has it)."""

    @property
    def base_url(self) -> str: ...

    @property
    def client_id(self) -> str | None: ...

    @property
    def bearer_token_file(self) -> str | None: ...

    @property
    def token_endpoint(self) -> str | None: ...


class OutboundCredentials:
    """Authorization headers for calls to member services, cached and refreshed one at a time."""

    def __init__(self, keys: KeyRing, http: httpx.AsyncClient, *, max_bytes: int, policy: AddressPolicy) -> None:
        self._keys = keys
        self._http = http
        self._max_bytes = max_bytes
        self._policy = policy
        self._tokens: dict[tuple[str, str, frozenset[str]], tuple[str, float]] = {}
        self._endpoints: dict[str, tuple[str, float]] = {}
        self._locks: dict[tuple[str, str, frozenset[str]], asyncio.Lock] = {}

    async def authorization(self, service: OutboundTarget, scopes: Iterable[str]) -> str:
        """The ``Authorization`` header value for a call to ``service`` needing ``scopes``.

        Raises:
            OutboundAuthError: no credentials are configured, or they could not be obtained.
        """
        if service.bearer_token_file:
            return "Bearer " + _read_token_file(service.bearer_token_file, service.base_url)
        if not service.client_id:
            raise OutboundAuthError(f"{service.base_url}: no client ID or bearer token file is configured for it")
        key = (service.base_url.rstrip("/"), service.client_id, frozenset(scopes))
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return "Bearer " + cached[0]
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached is not None and time.monotonic() < cached[1]:
                return "Bearer " + cached[0]
            endpoint = service.token_endpoint or await self.token_endpoint(key[0])
            token, expires_in = await self._request_token(endpoint, *key)
            # Refresh a little before expiry: a tenth of the lifetime, at most 30 s early.
            self._tokens[key] = (token, time.monotonic() + expires_in - min(30.0, expires_in / 10))
            return "Bearer " + token

    def forget(self, service: OutboundTarget) -> None:
        """Drop cached tokens for a service (after it answered 401 to one of them)."""
        base = service.base_url.rstrip("/")
        for key in [k for k in self._tokens if k[0] == base]:
            del self._tokens[key]

    async def token_endpoint(self, base_url: str) -> str:
        """The token endpoint a service announces in its SMART discovery document (cached for an hour),
        which must be on the service's own origin.

        Raises:
            OutboundAuthError: no usable discovery document, or it names a token endpoint elsewhere.
        """
        known = self._endpoints.get(base_url)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
        url = f"{base_url}/.well-known/smart-configuration"
        document = await self._json("GET", url, base_url, "its SMART configuration could not be read")
        endpoint = document.get("token_endpoint") if isinstance(document, dict) else None
        if not isinstance(endpoint, str) or not self._same_origin(endpoint, base_url):
            _log.warning("outbound_auth_failed", base_url=base_url, reason=f"token endpoint {str(endpoint)[:300]!r}")
            raise OutboundAuthError(
                f"{base_url}: its SMART configuration names no token endpoint on its own origin (an operator may "
                "configure one: services add --token-endpoint)"
            )
        self._endpoints[base_url] = (endpoint, time.monotonic() + _DISCOVERY_SECONDS)
        return endpoint

    def _same_origin(self, endpoint: str, base_url: str) -> bool:
        try:
            return self._policy.check_url(endpoint).origin == self._policy.check_url(base_url).origin
        except AddressRefused:
            return False

    async def _request_token(
        self, endpoint: str, base_url: str, client_id: str, scopes: frozenset[str]
    ) -> tuple[str, float]:
        keys = await self._keys.fresh()
        assertion = private_key_jwt_sign(
            keys.outbound,
            client_id,
            endpoint,
            alg=str(keys.outbound.alg),
            header={"kid": keys.outbound.kid, "typ": "JWT"},
            expires_in=MAX_ASSERTION_SECONDS,
        )
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(sorted(scopes)),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        answer = await self._json("POST", endpoint, base_url, "its token endpoint gave this registry no token", form)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        expires_in = answer.get("expires_in", 300) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise OutboundAuthError(f"{base_url}: its token response holds no usable access token")
        _log.info("outbound_token", base_url=base_url, client_id=client_id, expires_in=expires_in)
        return token, float(expires_in)

    async def _json(self, method: str, url: str, base_url: str, failed: str, data: dict[str, str] | None = None) -> Any:
        """One JSON call; on failure the details are logged and ``failed`` (words for a consumer) is raised."""
        try:
            status, value = await fetch_json(self._http, method, url, max_bytes=self._max_bytes, data=data)
        except RemoteError as exc:
            _log.warning("outbound_auth_failed", base_url=base_url, reason=str(exc))
            raise OutboundAuthError(f"{base_url}: {failed}") from None
        if status != 200:
            error = value.get("error") if isinstance(value, dict) else None
            reason = f"{url} refused: {str(error)[:100] if isinstance(error, str) else status}"
            _log.warning("outbound_auth_failed", base_url=base_url, reason=reason)
            raise OutboundAuthError(f"{base_url}: {failed} (it refused, HTTP {status})")
        return value


def _read_token_file(path: str, base_url: str) -> str:
    try:
        raw = Path(path).read_bytes()[: _MAX_TOKEN_FILE_BYTES + 1]
    except OSError as exc:
        raise OutboundAuthError(f"{base_url}: cannot read its bearer token file ({exc.strerror})") from None
    token = raw.decode("ascii", errors="replace").strip()
    if not token or len(raw) > _MAX_TOKEN_FILE_BYTES or any(c.isspace() or not c.isprintable() for c in token):
        raise OutboundAuthError(f"{base_url}: its bearer token file does not hold one token")
    return token
