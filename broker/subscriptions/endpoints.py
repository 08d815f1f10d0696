"""Where notifications may go: the scheme and the addresses an endpoint resolves to.

Outside dev mode an endpoint must be ``https`` and every address its host resolves to must be
globally routable: loopback, private, link-local (cloud metadata services), shared, reserved,
multicast and unspecified addresses are refused, unless the host is allow-listed
(``subscriptions.allowed_hosts``) or the address is in an allow-listed network
(``subscriptions.allowed_networks``). Dev mode allows ``http`` and any address.

The check runs on the resolved addresses, and the notifier connects to the address that was
checked (``resolve_checked`` returns it), so a DNS answer that changes between check and connect
(rebinding) cannot slip through; it runs again before every attempt.

EndpointError
├── EndpointRefused     the scheme or an address is not allowed
└── ResolutionFailed    the host name does not resolve
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ("EndpointError", "EndpointPolicy", "EndpointRefused", "ResolutionFailed", "Target")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EndpointError(Exception):
    """An endpoint notifications cannot be sent to."""


class EndpointRefused(EndpointError):
    """The endpoint's scheme, or an address its host resolves to, is not allowed."""


class ResolutionFailed(EndpointError):
    """The endpoint's host name does not resolve."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked endpoint: the URL as given, its host, and the checked address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    def connect_url(self) -> str:
        """The URL with the host replaced by the checked address (the ``Host`` header keeps the name)."""
        parts = urlsplit(self.url)
        address = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{address}:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the name as given, with a port only when it is not the scheme's default."""
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _networks(text: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class EndpointPolicy:
    """The endpoint rules of one deployment."""

    def __init__(self, *, dev: bool, allowed_hosts: str = "", allowed_networks: str = "") -> None:
        """Raises ``ValueError`` for an allowed network that is not a CIDR range."""
        self.dev = dev
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts.split(",") if h.strip())
        self.allowed_networks = _networks(allowed_networks)

    def check_url(self, url: str) -> tuple[str, str, int]:
        """The scheme, host and port of an endpoint URL.

        Raises:
            EndpointRefused: not an absolute http(s) URL, or http outside dev mode.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EndpointRefused(f"the endpoint is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointRefused("the endpoint must be an absolute https URL")
        if parts.username or parts.password:
            raise EndpointRefused("the endpoint URL must not carry credentials (use channel.header)")
        if parts.scheme == "http" and not self.dev:
            raise EndpointRefused("the endpoint must use https (http only in dev mode)")
        return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)

    def address_allowed(self, host: str, address: IPAddress) -> bool:
        """Whether notifications may go to ``address`` (which ``host`` resolved to)."""
        if self.dev or host in self.allowed_hosts:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast

    async def resolve_checked(self, url: str) -> Target:
        """Check an endpoint URL, resolve its host and check every address it resolves to.

        Raises:
            EndpointRefused: a refused scheme, or any refused address.
            ResolutionFailed: the host does not resolve.
        """
        scheme, host, port = self.check_url(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise ResolutionFailed(f"the endpoint host does not resolve: {exc}") from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
            if not addresses:
                raise ResolutionFailed("the endpoint host resolves to no address")
        refused = [str(a) for a in addresses if not self.address_allowed(host, a)]
        if refused:
            raise EndpointRefused(
                f"the endpoint resolves to an address notifications may not go to ({refused[0]}: loopback, private, "
                "link-local or reserved); an operator may allow it (subscriptions.allowed_hosts/allowed_networks)"
            )
        return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))
