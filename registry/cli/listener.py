"""The server's listening socket, bound before anything else starts, and the line that says the server answers.

``serve`` and ``demo`` bind their port first: a port in use (or not ours to take) stops the command
at once with the way to choose another, before a cluster is started, a token printed or a worker
run. The bound socket is handed to uvicorn (and shared by ``serve --workers N``), so nothing can
take the port in between. It is made as a TCP socket (``proto`` ``IPPROTO_TCP``): asyncio turns
Nagle's algorithm off only for such sockets, and uvicorn's own pre-bound sockets have ``proto`` 0,
which made every keep-alive response wait about 40 ms for the client's delayed ACK
(https://github.com/Kludex/uvicorn/issues/3149).

``Announcer`` logs ``server_ready`` with the URL of the index (``/``) once that URL answers 200.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading

import click
import httpx

from registry.log import get_logger

__all__ = ("Announcer", "bind", "bind_preferring", "origin")

_log = get_logger("registry.cli")

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - names the wildcard, binds nothing


def bind(host: str, port: int, *, choose: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), not yet listening.

    ``choose`` says how to pick another port (``--port N or IEF_HTTP_PORT=N``).

    Raises:
        ClickException: the port is in use, or not this user's to take, or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(_refusal(host, port, exc, choose)) from None
    sock.set_inheritable(True)  # serve --workers N hands it to its worker processes
    return sock


def bind_preferring(host: str, port: int, *, choose: str) -> socket.socket:
    """A TCP socket bound to ``host:port``, or to a free port the system chooses when that one is in use.

    Raises:
        ClickException: the address cannot be bound for another reason.
    """
    try:
        return bind(host, port, choose=choose)
    except click.ClickException:
        return bind(host, 0, choose=choose)


def _refusal(host: str, port: int, exc: OSError, choose: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another server is listening there): choose another with {choose}"
        )
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges this user does not have: choose one above 1023 with {choose}"
    if exc.errno in {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}:
        return f"cannot listen on {host}: it is not an address of this machine (IEF_HTTP_HOST, --host)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def origin(sock: socket.socket) -> str:
    """The URL a client on this machine reaches ``sock`` at (a wildcard address becomes loopback)."""
    host, port = sock.getsockname()[:2]
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Announcer:
    """Logs ``server_ready`` once the index at ``url`` answers 200; asks every 50 ms until then or until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="server-ready", daemon=True)

    def __enter__(self) -> Announcer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url).status_code == 200:
                        _log.info("server_ready", url=self.url)
                        return
                self._stop.wait(0.05)
