"""A real HTTP subscriber for tests: records every request (headers, exact body bytes) per hook path.

Each ``Hook`` is one endpoint path on the subscriber with its own switches: the status to answer
(a fixed code or a function of the request number), a ``Retry-After`` header, a delay before
answering. ``Subscriber.down()`` stops listening (connections are refused) and ``up()`` listens
on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn

from tests.fhir import parse_resource
from tests.server import LoopbackServer, free_port, read_body

__all__ = ("Hook", "Received", "Subscriber")


@dataclass(frozen=True)
class Received:
    """One request as the subscriber got it."""

    headers: dict[str, str]
    body: bytes
    at: float

    @functools.cached_property
    def bundle(self) -> dict[str, Any]:
        """The body as JSON (a notification Bundle), checked against the R4B models (once: waits read it often)."""
        data: dict[str, Any] = msgspec.json.decode(self.body)
        parse_resource(data)
        return data

    @property
    def parameters(self) -> dict[str, Any]:
        """The status Parameters of the notification."""
        return dict(self.bundle["entry"][0]["resource"])

    def parameter(self, name: str) -> Any:
        """The value of one status parameter (None when absent)."""
        for parameter in self.parameters["parameter"]:
            if parameter["name"] == name:
                return next((v for k, v in parameter.items() if k.startswith("value")), parameter.get("part"))
        return None

    @property
    def kind(self) -> str:
        """handshake, heartbeat or event-notification."""
        return str(self.parameter("type"))

    @property
    def event_numbers(self) -> list[int]:
        """The event numbers the notification carries."""
        found = []
        for parameter in self.parameters["parameter"]:
            if parameter["name"] == "notification-event":
                found += [int(p["valueString"]) for p in parameter["part"] if p["name"] == "event-number"]
        return found


@dataclass
class Hook:
    """One endpoint path of the subscriber and what it answers."""

    path: str
    base: str
    status: int | Callable[[int], int] = 200
    retry_after: str | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """The endpoint URL to subscribe with."""
        return f"{self.base}{self.path}"

    def answer(self, number: int) -> int:
        """The status for the ``number``-th request (1-based)."""
        return self.status(number) if callable(self.status) else self.status

    def of_kind(self, kind: str) -> list[Received]:
        """The requests of one notification kind."""
        return [r for r in self.received if r.kind == kind]

    def event_numbers(self) -> list[int]:
        """Every event number received, in arrival order (repeats included)."""
        return [n for r in self.received if r.kind == "event-notification" for n in r.event_numbers]

    def processed_event_numbers(self) -> tuple[list[int], int]:
        """The event numbers a subscriber that keeps webhook-ids processes (a repeat is skipped), and the repeats.

        A repeat must be the same bytes as the notification it repeats (``AssertionError`` if not).
        """
        first: dict[str, bytes] = {}
        numbers: list[int] = []
        repeats = 0
        for request in self.of_kind("event-notification"):
            webhook_id = request.headers["webhook-id"]
            if webhook_id in first:
                assert first[webhook_id] == request.body, f"{webhook_id} was sent again with other bytes"
                repeats += 1
                continue
            first[webhook_id] = request.body
            numbers += request.event_numbers
        return numbers, repeats

    async def wait(self, until: Callable[[Hook], bool], within: float = 15.0) -> None:
        """Wait until ``until(self)`` holds (fails the test after ``within`` seconds)."""
        deadline = time.monotonic() + within
        while not until(self):
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [r.kind for r in self.received]
                raise AssertionError(f"timed out waiting at {self.path}; received {kinds}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 0.5))

    async def wait_count(self, kind: str, count: int, within: float = 15.0) -> list[Received]:
        """Wait for at least ``count`` requests of one kind; return them."""
        await self.wait(lambda hook: len(hook.of_kind(kind)) >= count, within)
        return self.of_kind(kind)


class Subscriber:
    """The subscriber server: any number of hooks on one loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.hooks: dict[str, Hook] = {}
        self._names = itertools.count(1)
        self._server: LoopbackServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        """The subscriber's base URL."""
        return f"http://{self.host}:{self.port}"

    def hook(self, **switches: Any) -> Hook:
        """A new endpoint path with its own switches."""
        path = f"/hook/{next(self._names)}"
        created = Hook(path, self.base, **switches)
        self.hooks[path] = created
        return created

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        hook = self.hooks.get(scope["path"])
        if hook is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        hook.received.append(Received(headers=headers, body=body, at=time.time()))
        status = hook.answer(len(hook.received))
        if hook.delay:
            await asyncio.sleep(hook.delay)
        response_headers = [(b"retry-after", hook.retry_after.encode())] if hook.retry_after else []
        hook.changed.set()
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": b""})

    async def up(self) -> None:
        """Listen (again) on the subscriber's port."""
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            # Shutting down waits for the notifiers' keep-alive connections at most this long.
            timeout_graceful_shutdown=1,
        )
        self._server = LoopbackServer(config)
        self._task = await self._server.start()

    async def down(self) -> None:
        """Stop listening: notifications meet a refused connection."""
        if self._server is not None and self._task is not None:
            self._server.stop()
            await self._task
            self._server = None
