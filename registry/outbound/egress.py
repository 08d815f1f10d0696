"""Where this server may connect, and how: one address policy and one TLS floor for every outbound call.

Every outbound call (broker searches at gateways, federation look-ups at peers, JWKS and SMART
discovery documents, token requests, webhook notifications) goes through the clients made here:

- **The URL** (``AddressPolicy.check_url``): ``https``; plain ``http`` only in dev mode or to a
  loopback host (traffic that never leaves the machine); no credentials in it.
- **The addresses** (``AddressPolicy.address_allowed``): every address the host resolves to must
  be public. Refused: loopback, private, link-local (cloud metadata), shared (CGNAT), site-local,
  multicast, unspecified and reserved addresses, and every IPv6 form that embeds or maps to such
  an IPv4 address: IPv4-mapped (``::ffff:0:0/96``), IPv4-compatible (``::/96``), NAT64
  (``64:ff9b::/96`` by its embedded address; ``64:ff9b:1::/48`` is local-use and refused), 6to4
  (``2002::/16``) and Teredo (``2001::/32``, both embedded addresses). An operator may allow
  host names whatever they resolve to, or address ranges (a hospital network's gateways). Dev
  mode allows every address.
- **At connection time** (``CheckedBackend``): the host is resolved, every address checked, and the
  connection made to a checked address, for each new connection; TLS still verifies the host
  name. A DNS answer that changed since a URL was accepted (rebinding) cannot slip through.
- **TLS 1.2 at least** (``tls_context``), certificates verified, no proxies from the environment,
  no redirects.

URLs are also checked when they are accepted (``AddressPolicy.check``: ``services add``, client
JWKS URLs, trusted issuers, subscription endpoints), so a mistake is refused at once rather than
at the first call.

EgressError (an httpcore.ConnectError, so httpx reports it as a ConnectError caused by it)
├── AddressRefused      the scheme, or an address the host resolves to, is not allowed
└── ResolutionFailed    the host name does not resolve
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpcore
import httpx

from registry import errors
from registry.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from registry.config import Settings

__all__ = (
    "AddressPolicy",
    "AddressRefused",
    "CheckedBackend",
    "Destination",
    "EgressError",
    "ResolutionFailed",
    "accept_url",
    "embedded_ipv4",
    "is_public",
    "new_client",
    "new_connection",
    "outbound_policy",
    "refusal",
    "tls_context",
    "webhook_policy",
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_log = get_logger("registry.outbound.egress")


class EgressError(httpcore.ConnectError):
    """A destination this server will not connect to."""


class AddressRefused(EgressError):
    """The URL's scheme, or an address its host resolves to, is not allowed."""


class ResolutionFailed(EgressError):
    """The host name does not resolve."""


def refusal(exc: BaseException) -> EgressError | None:
    """The ``EgressError`` behind an exception raised by an httpx client (its cause), if any."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, EgressError):
            return cause
        cause = cause.__cause__
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address maps to or embeds (mapped, compatible, NAT64, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _public_ipv4(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not address.is_multicast


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally routable, IPv4 embedded in IPv6 included (no allow-lists)."""
    if isinstance(address, ipaddress.IPv4Address):
        return _public_ipv4(address)
    if address.ipv4_mapped is not None:
        return _public_ipv4(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL or address.is_site_local or address.is_multicast:
        return False
    return address.is_global and all(_public_ipv4(inner) for inner in embedded_ipv4(address))


def _networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    parts = text.split(",") if isinstance(text, str) else text
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in parts if part.strip())


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_loopback_host(host: str) -> bool:
    literal = _literal(host)
    if literal is None:
        return host.lower().rstrip(".") in _LOOPBACK_NAMES
    if isinstance(literal, ipaddress.IPv6Address) and literal.ipv4_mapped is not None:
        literal = literal.ipv4_mapped
    return literal.is_loopback


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL's scheme, host (lower case, no brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: two URLs with the same origin are the same server (RFC 6454)."""
        return self.scheme, self.host, self.port


class AddressPolicy:
    """The outbound rules of one deployment (one for member services and peers, one for webhooks)."""

    def __init__(self, *, dev: bool, allowed_hosts: str | Iterable[str] = "", allowed_networks: str = "") -> None:
        """Raises ``ValueError`` for an allowed network that is not a CIDR range."""
        self.dev = dev
        hosts = allowed_hosts.split(",") if isinstance(allowed_hosts, str) else allowed_hosts
        self.allowed_hosts = frozenset(h.strip().lower() for h in hosts if h.strip())
        self.allowed_networks = _networks(allowed_networks)

    def check_url(self, url: str, what: str = "the URL") -> Destination:
        """The destination of a URL this server would call.

        Raises:
            AddressRefused: not an absolute http(s) URL, credentials in it, or plain http outside
                dev mode to a host that is not loopback.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise AddressRefused(f"{what} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AddressRefused(f"{what} must be an absolute https URL")
        if parts.username or parts.password:
            raise AddressRefused(f"{what} must not carry credentials")
        if parts.scheme == "http" and not self.dev and not _is_loopback_host(parts.hostname):
            raise AddressRefused(f"{what} must use https (TLS); plain http only in dev mode or on loopback")
        return Destination(parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80))

    def address_allowed(self, host: str, address: IPAddress) -> bool:
        """Whether this server may connect to ``address``, which ``host`` resolved to."""
        if self.dev or host.lower() in self.allowed_hosts:
            return True
        inner: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            inner += embedded_ipv4(address)
        if any(a in n for a in inner for n in self.allowed_networks if a.version == n.version):
            return True
        return is_public(address)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to, each checked; the order the resolver gave.

        Raises:
            AddressRefused: any of them is not allowed (one bad answer taints the name).
            ResolutionFailed: the host does not resolve.
        """
        literal = _literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise ResolutionFailed(f"the host {host[:100]!r} does not resolve ({exc})") from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
            if not addresses:
                raise ResolutionFailed(f"the host {host[:100]!r} resolves to no address")
        refused = [a for a in addresses if not self.address_allowed(host, a)]
        if refused:
            _log.warning("outbound_refused", host=host[:200], address=str(refused[0]))
            raise AddressRefused(
                "the address is not one this server may call (loopback, private, link-local or otherwise "
                "local); an operator may allow it (allowed_hosts / allowed_networks)"
            )
        return addresses

    async def check(self, url: str, what: str = "the URL") -> Destination:
        """Check a URL and every address its host resolves to now (when a URL is accepted).

        Raises:
            AddressRefused: a refused scheme or address.
            ResolutionFailed: the host does not resolve.
        """
        destination = self.check_url(url, what)
        await self.resolve(destination.host, destination.port)
        return destination


async def accept_url(policy: AddressPolicy, url: str, what: str) -> str:
    """A URL an operator gives to be called later (a member's base URL, a JWKS URL), checked now: its scheme,
    and every address its host resolves to at this moment; returned without surrounding spaces. A host
    that does not resolve yet is accepted with a warning (``outbound_unresolved``): it has no address to
    refuse, and every connection is checked when it is made.

    Raises:
        InvalidInput: the URL, or an address its host resolves to, is refused (``address-refused``).
    """
    try:
        await policy.check(url.strip(), what)
    except ResolutionFailed as exc:
        _log.warning("outbound_unresolved", url=url.strip()[:300], reason=str(exc))
    except EgressError as exc:
        message = f"{what} {url.strip()[:200]!r} is refused: {exc}"
        raise errors.InvalidInput(message, code=errors.ErrorCode.ADDRESS_REFUSED) from None
    return url.strip()


def outbound_policy(settings: Settings) -> AddressPolicy:
    """The policy of calls the operator configured: member gateways and registries, JWKS URLs, token endpoints."""
    return AddressPolicy(
        dev=settings.dev,
        allowed_hosts=settings.outbound.allowed_hosts,
        allowed_networks=settings.outbound.allowed_networks,
    )


def webhook_policy(settings: Settings) -> AddressPolicy:
    """The policy of notifications, whose endpoints clients choose (their own allow-lists, not the members')."""
    return AddressPolicy(
        dev=settings.dev,
        allowed_hosts=settings.subscriptions.allowed_hosts,
        allowed_networks=settings.subscriptions.allowed_networks,
    )


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address policy in front of every new connection."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, connect to the first checked one that answers."""
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host[:100]!r} took too long") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: outbound calls go over TCP."""
        raise AddressRefused("outbound calls do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        """Wait (httpcore's retry delays)."""
        await self._inner.sleep(seconds)


def tls_context() -> ssl.SSLContext:
    """The TLS client context of every outbound call: httpx's trust store, certificates verified, TLS 1.2 at least."""
    context = httpx.create_ssl_context(trust_env=False)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with ``policy``'s URL check on every request and its address check on every connection."""

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits) -> None:
        context = tls_context()
        super().__init__(verify=context, limits=limits, trust_env=False)
        self._policy = policy
        # httpx takes no network backend; its pool is rebuilt with ours (tests/security/test_outbound_addresses.py
        # proves each client refuses a loopback address at connection time, so a change in httpx would show).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse a URL the policy does not allow (as a ``ConnectError`` caused by ``AddressRefused``), else send."""
        try:
            self._policy.check_url(str(request.url))
        except AddressRefused as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return await super().handle_async_request(request)


def new_client(
    policy: AddressPolicy, *, timeout: httpx.Timeout, limits: httpx.Limits, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """An httpx client whose every request and connection passes ``policy``, over TLS 1.2 at least; no
    redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        transport=_CheckedTransport(policy, limits),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )


def new_connection(
    origin: httpcore.Origin, backend: CheckedBackend, context: ssl.SSLContext, *, keepalive_expiry: float
) -> httpcore.AsyncHTTPConnection:
    """One httpcore connection to ``origin`` through ``backend`` (its policy) with ``context`` (from
    ``tls_context``), for a caller that keeps its own connections (the broker's per-gateway stacks)."""
    return httpcore.AsyncHTTPConnection(
        origin, ssl_context=context, keepalive_expiry=keepalive_expiry, retries=0, network_backend=backend
    )
