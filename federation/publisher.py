"""Upstream publication (DESIGN §11): this registry keeps, at a registry it publishes to, a ``registry`` record
naming itself for every IHI that has an active ``record`` here.

Statement-level triggers on ``records`` (migration 0009) put every IHI whose active records may have
changed into ``publication_outbox``, in the registration's own transaction. The publisher (inside
``serve``, and in ``ief-registry worker``) claims one publication at a time (a lease, ``FOR UPDATE
SKIP LOCKED``, so any number of processes share the work and one target is served by one of them),
reads the oldest outbox rows, works out each IHI's state now (``active``, or ``archived`` once its
last active record went) and sends those that differ from what it last published in one batch
request (``POST /registry/records:batch`` at the target, this registry's client bound to its own
service ID with ``system/Basic.cu``). Only after the target accepted them are the rows deleted and
the published states kept: a publisher killed at any point leaves the rows to be sent again (at
least once, in order; a repeat is harmless at the target). A failure waits with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from registry import __version__
from registry.db.errors import translate_db_errors
from registry.log import get_logger
from registry.outbound.egress import new_client, refusal
from registry.outbound.reader import TooLarge, read_capped, refuse_declared
from schemas import strictjson

if TYPE_CHECKING:
    from federation.client import Credentials
    from registry.config import FederationSettings
    from registry.db.pool import Database
    from registry.db.queries import Queries
    from registry.feature import Members
    from registry.outbound.egress import AddressPolicy

__all__ = ("PublicationRepository", "PublicationState", "Publisher")

_log = get_logger(__name__)
_SCOPES = ("system/Basic.cu",)
_BACKOFF_MAX = 300.0
_MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The largest batch answer read from a target (a result per item: 10,000 items are about 2 MB)."""


@dataclass(frozen=True, slots=True)
class PublicationState:
    """Where a publication stands: IHIs sent, outbox rows waiting, the last error."""

    target: str
    enabled: bool
    sent: int
    waiting: int
    attempts: int
    last_error: str | None


class PublicationRepository:
    """The only caller of ``sql/queries/publications.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def add(self, db: Database, target: str) -> None:
        """Publish to ``target`` from now on."""
        async with db.writer() as conn:
            with translate_db_errors():
                await conn.execute(self._q["publication_add"], target)

    async def state(self, db: Database, target: str) -> PublicationState | None:
        """A publication's state, or None when this registry does not publish to ``target``."""
        async with db.reader() as conn:
            with translate_db_errors():
                row = await conn.fetchrow(self._q["publication_status"], target)
        if row is None:
            return None
        return PublicationState(
            row["target"], row["enabled"], row["sent"], row["waiting"], row["attempts"], row["last_error"]
        )

    async def claim(self, db: Database, owner: str, lease: float) -> tuple[str, int] | None:
        """Claim one due publication for ``lease`` seconds: its target and failed attempts so far."""
        async with db.writer() as conn:
            with translate_db_errors():
                row = await conn.fetchrow(self._q["publication_claim"], lease, owner)
        return None if row is None else (row["target"], row["attempts"])

    async def head(self, db: Database, target: str, limit: int) -> list[Any]:
        async with db.writer() as conn:
            with translate_db_errors():
                return list(await conn.fetch(self._q["publication_next"], target, limit))

    async def delivered(self, db: Database, target: str, last_seq: int, sent: dict[str, str], owner: str) -> None:
        async with db.writer() as conn:
            with translate_db_errors():
                await conn.execute(
                    self._q["publication_delivered"], target, last_seq, list(sent), list(sent.values()), owner
                )

    async def failed(self, db: Database, target: str, wait: float, error: str, owner: str) -> None:
        async with db.writer() as conn:
            with translate_db_errors():
                await conn.execute(self._q["publication_failed"], target, wait, error[:500], owner)


class PublishFailed(Exception):
    """The target did not accept a publication (the rows stay, to be sent again)."""


class Publisher:
    """One process's publisher loop."""

    def __init__(
        self,
        db: Database,
        repository: PublicationRepository,
        settings: FederationSettings,
        *,
        origin: str,
        directory: Members,
        credentials: Credentials,
        policy: AddressPolicy,
    ) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings
        self._origin = origin
        self._directory = directory
        self._credentials = credentials
        # The outbound address policy at every request and connection, TLS 1.2 at least (registry.outbound.egress).
        self._http = new_client(
            policy,
            timeout=httpx.Timeout(settings.publish_timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={"User-Agent": f"ief-registry/{__version__}"},
        )
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="federation-publisher")

    async def stop(self) -> None:
        """Stop the loop (a publication in flight keeps its rows until its lease expires) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.round()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database outage
                _log.error("publisher_round_failed", worker=self.name, error=f"{type(exc).__name__}: {exc}")
                busy = False
            if not busy:
                await asyncio.sleep(self._settings.publish_poll_interval)

    async def round(self) -> bool:
        """Publish the next outbox rows of one due publication; whether there was one."""
        # The lease outlasts the request (publish_timeout) and the database round trips around it, so a
        # publication is never sent by two processes at once; a process killed meanwhile leaves it to
        # another once the lease ends.
        claimed = await self._repo.claim(self._db, self.name, 2 * self._settings.publish_timeout + 5)
        if claimed is None:
            return False
        target, attempts = claimed
        rows = await self._repo.head(self._db, target, self._settings.publish_batch)
        changes = {row["ihi"]: row["wanted"] for row in rows if row["wanted"] != (row["published"] or "archived")}
        try:
            if changes:
                await self._send(target, changes)
        except PublishFailed as exc:
            wait = min(_BACKOFF_MAX, 0.5 * 2**attempts)
            await self._repo.failed(self._db, target, wait, str(exc), self.name)
            _log.warning("publication_failed", target=target, ihis=len(changes), retry_in=wait, error=str(exc))
            return True
        last_seq = max((row["last_seq"] for row in rows), default=0)
        await self._repo.delivered(self._db, target, last_seq, changes, self.name)
        if changes:
            _log.info("publication_delivered", target=target, ihis=len(changes))
        return True

    async def _send(self, target: str, changes: dict[str, str]) -> None:
        service = (await self._directory.get_many([target])).get(target)
        if service is None:
            raise PublishFailed("the target is not in this registry's services directory")
        items = [
            {"ihi": ihi, "serviceId": self._origin, "status": status, "type": "registry"}
            for ihi, status in changes.items()
        ]
        try:
            authorization = await self._credentials.authorization(service, _SCOPES)
        except Exception as exc:  # noqa: BLE001 - credentials of any kind that could not be had
            raise PublishFailed(f"credentials: {exc}") from None
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        url = f"{service.base_url.rstrip('/')}/registry/records:batch"
        body = b""
        try:
            async with self._http.stream("POST", url, content=msgspec.json.encode(items), headers=headers) as response:
                status = response.status_code
                if status == 200:
                    refuse_declared(response.headers.get("content-length"), _MAX_ANSWER_BYTES)
                    body = await read_capped(response.aiter_bytes(), _MAX_ANSWER_BYTES)
        except TooLarge:
            raise PublishFailed(f"the target's answer is over {_MAX_ANSWER_BYTES} bytes") from None
        except httpx.ConnectError as exc:
            refused = refusal(exc)
            raise PublishFailed(f"not called: {refused}" if refused else f"no connection: {exc}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from None
        if status in (401, 403):
            self._credentials.forget(service)
        if status != 200:
            raise PublishFailed(f"the target answered {status}")
        try:
            answer = strictjson.decode(body, max_depth=strictjson.REMOTE_MAX_DEPTH, duplicate_keys=True)
        except strictjson.JsonError as exc:
            raise PublishFailed(f"the target's answer is not usable JSON: {exc}") from None
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise PublishFailed("the target's answer is not a batch result")
        failed = [r for r in results if not isinstance(r, dict) or r.get("result") == "error"]
        if failed:
            first = failed[0].get("error") if isinstance(failed[0], dict) else failed[0]
            raise PublishFailed(f"the target refused {len(failed)} items: {first}")
