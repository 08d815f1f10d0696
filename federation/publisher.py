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

from registry.db.errors import translate_db_errors
from registry.log import get_logger

if TYPE_CHECKING:
    from federation.client import Credentials
    from registry.config import FederationSettings
    from registry.db.pool import Database
    from registry.db.queries import Queries
    from registry.feature import Members

__all__ = ("PublicationRepository", "PublicationState", "Publisher")

_log = get_logger(__name__)
_SCOPES = ("system/Basic.cu",)
_LEASE_SECONDS = 60.0
_BACKOFF_MAX = 300.0


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

    async def claim(self, db: Database, owner: str) -> tuple[str, int] | None:
        async with db.writer() as conn:
            with translate_db_errors():
                row = await conn.fetchrow(self._q["publication_claim"], _LEASE_SECONDS, owner)
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
    ) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings
        self._origin = origin
        self._directory = directory
        self._credentials = credentials
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(settings.publish_timeout), follow_redirects=False)
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
        claimed = await self._repo.claim(self._db, self.name)
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
            response = await self._http.post(
                f"{service.base_url.rstrip('/')}/registry/records:batch",
                content=msgspec.json.encode(items),
                headers={"Authorization": authorization, "Content-Type": "application/json"},
            )
        except (httpx.HTTPError, OSError) as exc:
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - credentials of any kind that could not be had
            raise PublishFailed(f"credentials: {exc}") from None
        if response.status_code in (401, 403):
            self._credentials.forget(service)
        if response.status_code != 200:
            raise PublishFailed(f"the target answered {response.status_code}")
        failed = [r for r in msgspec.json.decode(response.content).get("results", []) if r.get("result") == "error"]
        if failed:
            raise PublishFailed(f"the target refused {len(failed)} items: {failed[0].get('error')}")
