"""Outbound HTTP for authentication: JSON from other servers with a timeout, a size limit and one error.

Used to fetch JWKS documents (client keys, trusted issuers), SMART discovery documents and token
responses. Every failure (connection, timeout, status, size, not JSON) is a ``RemoteError`` whose
message says what went wrong without echoing the remote body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from registry.outbound.egress import new_client, refusal
from registry.outbound.reader import TooLarge, read_capped
from schemas import strictjson

if TYPE_CHECKING:
    from registry.outbound.egress import AddressPolicy

__all__ = ("JwksCache", "RemoteError", "fetch_json", "new_http_client")

_MIN_REFETCH_SECONDS = 10.0
"""An unknown ``kid`` triggers a refetch of a cached JWKS at most this often (per URL)."""


class RemoteError(Exception):
    """Another server did not give a usable answer."""


def new_http_client(timeout: float, policy: AddressPolicy) -> httpx.AsyncClient:
    """The HTTP client for outbound auth calls: explicit timeouts and pool limits, no redirects, ``policy``'s
    addresses only, TLS 1.2 at least (``registry.outbound.egress``)."""
    return new_client(
        policy,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        headers={"Accept": "application/json"},
    )


async def fetch_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    data: dict[str, str] | None = None,
    ok: tuple[int, ...] = (200,),
) -> tuple[int, Any]:
    """One request whose answer is JSON of at most ``max_bytes``; returns the status and the value.

    Raises:
        RemoteError: the request failed, the status is not in ``ok`` (unless the body is JSON and the
            status is 4xx: the caller reads OAuth errors), the body is too large or not JSON.
    """
    try:
        async with http.stream(method, url, data=data) as response:
            body = await read_capped(response.aiter_bytes(), max_bytes)
            status = response.status_code
    except TooLarge:
        raise RemoteError(f"{url}: answer larger than {max_bytes} bytes") from None
    except httpx.TimeoutException:
        raise RemoteError(f"{url}: no answer in time") from None
    except httpx.HTTPError as exc:
        refused = refusal(exc)
        raise RemoteError(f"{url}: {refused or type(exc).__name__}") from None
    try:
        value = strictjson.decode(bytes(body), max_depth=strictjson.REMOTE_MAX_DEPTH, duplicate_keys=True)
    except strictjson.JsonError:
        raise RemoteError(f"{url}: answered {status} without usable JSON") from None
    if status not in ok and not 400 <= status < 500:
        raise RemoteError(f"{url}: answered {status}")
    return status, value


@dataclass(slots=True)
class _Entry:
    keys: KeySet
    kids: frozenset[str | None]
    fetched_at: float


class JwksCache:
    """JWKS documents fetched by URL: cached, refetched when stale or (rate-limited) on an unknown kid."""

    def __init__(self, http: httpx.AsyncClient, *, max_bytes: int, cache_seconds: float) -> None:
        self._http = http
        self._max_bytes = max_bytes
        self._cache_seconds = cache_seconds
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, url: str, kid: str | None = None) -> KeySet:
        """The key set at ``url``; a kid it lacks makes it refetch at most every few seconds.

        Raises:
            RemoteError: it cannot be fetched and nothing usable is cached.
        """
        entry = self._entries.get(url)
        if entry is not None and self._usable(entry, kid):
            return entry.keys
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._entries.get(url)
            if entry is not None and self._usable(entry, kid):
                return entry.keys
            if entry is not None and time.monotonic() - entry.fetched_at < _MIN_REFETCH_SECONDS:
                return entry.keys  # an unknown kid, but refetched moments ago: do not hammer the server
            try:
                _status, document = await fetch_json(self._http, "GET", url, max_bytes=self._max_bytes)
                keys = parse_jwks(document, url)
            except RemoteError:
                if entry is not None:
                    return entry.keys
                raise
            self._entries[url] = _Entry(keys, frozenset(key.kid for key in keys), time.monotonic())
            return keys

    def _usable(self, entry: _Entry, kid: str | None) -> bool:
        fresh = time.monotonic() - entry.fetched_at < self._cache_seconds
        return fresh and (kid is None or kid in entry.kids)


def parse_jwks(document: Any, origin: str) -> KeySet:
    """A JWKS document as a key set of public keys.

    Raises:
        RemoteError: it is not a JWKS.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise RemoteError(f"{origin}: not a JWKS document")
    try:
        return KeySet.import_key_set({"keys": [key for key in document["keys"] if isinstance(key, dict)]})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise RemoteError(f"{origin}: unusable JWKS ({exc})") from None
