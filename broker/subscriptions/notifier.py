"""One notification attempt over HTTP: endpoint checks, headers, signature, timeout, outcome.

The dedicated httpx client (``registry.outbound.egress.new_client``) never follows redirects (a 3xx is a
failure), speaks TLS 1.2 at least and never reads more than the status line and headers of an
answer. The endpoint's URL is checked on every attempt and, on every new connection, its host is
resolved, every address checked against the webhook policy and the connection made to a checked
address (the ``Host`` header and TLS server name keep the endpoint's host name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from broker.subscriptions.retry import parse_retry_after
from broker.subscriptions.signing import webhook_headers
from registry.outbound.egress import AddressRefused, ResolutionFailed, new_client, refusal

if TYPE_CHECKING:
    from broker.subscriptions.repository import StoredSubscription
    from registry.outbound.egress import AddressPolicy

__all__ = ("Attempt", "Notifier", "channel_headers")

_USER_AGENT = "ief-registry-notifier"


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt ended.

    Attributes:
        ok: a 2xx within the timeout.
        status: the HTTP status, when there was an answer.
        error_code: the ``subscription-error`` code of a failure (``dns-resolution-error``,
            ``no-response``, ``error-response``), or None for a refused endpoint.
        error: what went wrong, for logs and ``Subscription.error`` (never a header value).
        retry_after: seconds the subscriber asked to wait (``Retry-After``).
        final: retrying cannot help (``410 Gone``, or the endpoint is now refused).
        latency_ms: how long the attempt took.
    """

    ok: bool
    status: int | None = None
    error_code: str | None = None
    error: str = ""
    retry_after: float | None = None
    final: bool = False
    latency_ms: float = 0.0


def channel_headers(lines: list[str]) -> dict[str, str]:
    """``channel.header`` entries as HTTP headers: split on the first colon, one leading space dropped."""
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value[1:] if value.startswith(" ") else value
    return headers


def signing_keys(subscription: StoredSubscription) -> list[str]:
    """The secrets that sign: the current one, and the previous one while a rotation lasts."""
    keys = [subscription.secret]
    until = subscription.previous_secret_until
    if subscription.previous_secret and until is not None and until > datetime.now(UTC):
        keys.append(subscription.previous_secret)
    return keys


class Notifier:
    """Sends notifications; one instance (one connection pool) per worker."""

    def __init__(self, policy: AddressPolicy, *, max_connections: int) -> None:
        self._client = new_client(
            policy,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(10.0),
            headers={"User-Agent": _USER_AGENT},
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(self, subscription: StoredSubscription, body: bytes, webhook_id: str) -> Attempt:
        """One attempt of a notification to a subscription's endpoint."""
        started = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - started) * 1000, 2)

        headers = channel_headers(subscription.headers)
        headers["Content-Type"] = subscription.payload_type
        headers.update(webhook_headers(signing_keys(subscription), webhook_id, int(time.time()), body))
        try:
            async with self._client.stream(
                "POST", subscription.endpoint, content=body, headers=headers,
                timeout=float(subscription.timeout_seconds),
            ) as response:  # fmt: skip
                status = response.status_code
                retry_after = parse_retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            return Attempt(
                ok=False, error_code="no-response", error="the endpoint did not answer in time", latency_ms=took()
            )
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            refused = refusal(exc)
            if isinstance(refused, ResolutionFailed):
                return Attempt(ok=False, error_code="dns-resolution-error", error=str(refused), latency_ms=took())
            if isinstance(refused, AddressRefused):
                return Attempt(ok=False, error=f"the endpoint is refused: {refused}", final=True, latency_ms=took())
            return Attempt(
                ok=False, error_code="no-response", error=f"no answer: {type(exc).__name__}", latency_ms=took()
            )
        if 200 <= status < 300:
            return Attempt(ok=True, status=status, latency_ms=took())
        return Attempt(
            ok=False, status=status, error_code="error-response", error=f"HTTP {status}", retry_after=retry_after,
            final=status == 410, latency_ms=took(),
        )  # fmt: skip
