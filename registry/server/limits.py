"""Bounds the HTTP server keeps before any request reaches the application.

uvicorn's httptools protocol collects a request's head (request line and headers) in memory
without a limit, waits for it without a deadline, and takes any number of connections from one
address: one client with a 64 MB header, or hundreds that send a byte a second, costs the
process its memory or its connections. ``LimitedHttpToolsProtocol`` adds, per connection:

- **a head size limit** (``http.max_header_bytes``): past it, ``431`` with an OperationOutcome
  (``request-head-too-large``) and the connection closed. Counted while the head arrives (the
  bytes held never pass the limit by more than one read) and exactly once it is complete; a
  complete head over the limit is answered by a small ASGI app of its own, never by the
  application.
- **a head deadline** (``http.header_timeout``): a connection must deliver a complete head that
  long after it opens or after its previous response; a partial head is answered ``408``
  (``request-head-timeout``), a connection that sent nothing is closed.
- **connections per client address** (``http.max_connections_per_address``, per process): the
  next one is answered ``429`` (``too-many-connections``) with ``Retry-After`` and closed. Trusted proxies
  (``trusted_proxies``) are not limited: every client behind them shares their address.

``uvicorn_options(settings)`` is what ``serve`` (one process or several) and the tests give
uvicorn: this protocol, proxy headers trusted only from ``trusted_proxies`` (none by default, so
``X-Forwarded-For`` and ``X-Forwarded-Proto`` from anyone else change nothing), and how long an
idle connection is kept (``http.keep_alive_timeout``). The server must close idle connections
later than its clients stop reusing them: a client that sends a request on a connection in the
very moment the server closes it gets a reset (``ReadError``), not an answer. uvicorn's 5 s
default equals httpx's idle expiry (the registry's own peers, most Python clients), hence 15 s;
behind a load balancer, more than the balancer's idle timeout.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from registry.log import get_logger
from registry.outcome import FHIR_JSON, outcome_body, status_of
from schemas.errors import ErrorCode
from schemas.fhir.canonical import Canonicals

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

    from registry.config import Settings

__all__ = ("LimitedHttpToolsProtocol", "ServingLimits", "trusted_networks", "uvicorn_options")

_log = get_logger("registry.server")
_HEAD_SLACK = 12
"""Bytes of a head not in its URL and headers: method, spaces, ``HTTP/1.1``, line ends (a lower bound)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> tuple[Network, ...]:
    """The addresses of ``trusted_proxies`` (comma-separated addresses or CIDR ranges).

    Raises:
        ValueError: an entry is neither.
    """
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class ServingLimits:
    """The per-connection bounds of one server process."""

    max_header_bytes: int
    header_timeout: float
    max_connections_per_address: int
    canon: Canonicals
    """Where the ``ief-error`` codes of the refusals' OperationOutcomes are published."""
    exempt: tuple[Network, ...] = ()
    open_by_address: dict[str, int] = field(default_factory=dict, compare=False)
    """Open connections per client address in this process (each worker process has its own)."""

    def exempted(self, address: str) -> bool:
        """Whether connections from ``address`` are not counted (a trusted proxy)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.exempt)


def _response(canon: Canonicals, code: ErrorCode, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A whole HTTP/1.1 response with an OperationOutcome body that closes the connection."""
    body = outcome_body(canon, code, [(message, None, None)])
    head = [STATUS_LINE[status_of(code)], b"content-type: ", FHIR_JSON.encode(), b"\r\n"]
    for name, value in (*headers, (b"content-length", str(len(body)).encode()), (b"connection", b"close")):
        head += [name, b": ", value, b"\r\n"]
    return b"".join([*head, b"\r\n", body])


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit, a head deadline and connections per address."""

    def __init__(self, *args: Any, limits: ServingLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._head_bytes = 0
        self._reading_head = True
        self._events = 0
        """Heads and messages completed on this connection: a read during which one completes holds other bytes
        than head bytes, so it is not counted (what it began is counted from the next read)."""
        self._refused = False
        self._counted: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against its address (refusing it past the limit) and start the head deadline."""
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and not self._limits.exempted(address):
            open_now = self._limits.open_by_address.get(address, 0)
            if open_now >= self._limits.max_connections_per_address:
                _log.warning("request_refused", reason="connections per address", address=address)
                message = f"too many connections from this address (at most {self._limits.max_connections_per_address})"
                self._refuse(ErrorCode.TOO_MANY_CONNECTIONS, message, ((b"retry-after", b"1"),))
                return
            self._limits.open_by_address[address] = open_now + 1
            self._counted = address
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the connection's count and deadline."""
        if self._counted is not None:
            left = self._limits.open_by_address.get(self._counted, 1) - 1
            if left > 0:
                self._limits.open_by_address[self._counted] = left
            else:
                self._limits.open_by_address.pop(self._counted, None)
            self._counted = None
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; while the head is incomplete, count its bytes and refuse it past the limit."""
        if self._refused:
            return
        events, reading = self._events, self._reading_head
        if reading and self._head_timer is None:
            self._start_head_timer()  # the first bytes of a request after an idle keep-alive connection
        super().data_received(data)
        if reading and self._reading_head and self._events == events and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self._refuse_head()

    def on_message_begin(self) -> None:
        """A new request: its head starts now."""
        super().on_message_begin()
        self._head_bytes = 0
        self._reading_head = True

    def on_headers_complete(self) -> None:
        """The head is complete: stop its deadline; answer 431 (without the application) when it is too large."""
        self._reading_head = False
        self._events += 1
        self._stop_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) + _HEAD_SLACK
        if size <= self._limits.max_header_bytes:
            super().on_headers_complete()
            return
        _log.warning("request_refused", reason="request head too large", head_bytes=size)
        application = self.app
        self.app = functools.partial(_answer, self._limits.canon, self._head_message())
        try:
            super().on_headers_complete()
        finally:
            self.app = application

    def on_message_complete(self) -> None:
        """The request is complete: the next bytes begin another head."""
        super().on_message_complete()
        self._reading_head = True
        self._events += 1
        self._head_bytes = 0

    def _head_message(self) -> str:
        return f"the request line and headers are larger than {self._limits.max_header_bytes} bytes"

    def _refuse_head(self) -> None:
        _log.warning("request_refused", reason="request head too large", head_bytes=self._head_bytes)
        self._refuse(ErrorCode.REQUEST_HEAD_TOO_LARGE, self._head_message())

    def _refuse(self, code: ErrorCode, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer outside any request cycle (no request, or an incomplete one) and close the connection."""
        self._refused = True
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_response(self._limits.canon, code, message, headers))
            self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing() or not self._reading_head:
            return
        answering: Any = self.cycle  # None until the first request (uvicorn types it as always set)
        if answering is not None and not answering.response_complete:
            return  # a request is being answered; its successor's head has not begun
        if self._head_bytes == 0 and not getattr(self, "url", b""):
            self._refused = True
            self.transport.close()  # nothing was sent: no request to answer
            return
        _log.warning("request_refused", reason="request head not complete in time", head_bytes=self._head_bytes)
        message = f"the request line and headers did not arrive within {self._limits.header_timeout:g} s"
        self._refuse(ErrorCode.REQUEST_HEAD_TIMEOUT, message)


async def _answer(canon: Canonicals, message: str, _scope: Scope, receive: Receive, send: Send) -> None:
    """The whole ASGI answer to a complete request head over the limit (431), closing the connection."""
    code = ErrorCode.REQUEST_HEAD_TOO_LARGE
    body = outcome_body(canon, code, [(message, None, None)])
    headers = [
        (b"content-type", FHIR_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status_of(code), "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options every server process gives ``uvicorn.Config``: the limited protocol and the proxy rules.

    Raises:
        ValueError: ``trusted_proxies`` holds something that is not an address or a CIDR range.
    """
    proxies = trusted_networks(settings.trusted_proxies)
    limits = ServingLimits(
        max_header_bytes=settings.http.max_header_bytes,
        header_timeout=settings.http.header_timeout,
        max_connections_per_address=settings.http.max_connections_per_address,
        canon=Canonicals.under(settings.fhir.canonical_base),
        exempt=proxies,
    )
    return {
        "http": functools.partial(LimitedHttpToolsProtocol, limits=limits),
        "timeout_keep_alive": settings.http.keep_alive_timeout,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": [str(network) for network in proxies],
        "server_header": False,
    }
