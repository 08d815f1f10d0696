"""Lifecycle commands over a service's records: ``services retire``, ``services move``, ``records stale``.

Each is a job over IHI ranges in keyset order: one chunk is one transaction that writes its records
(set-based SQL: the statement-level triggers write their history entries and notifications), the
chunk's audit row and the job's progress together. A job killed at any point (SIGKILL included)
resumes, when run again, after the last committed chunk: every record is processed exactly once.
``Progress`` is told where the job is after every chunk (the command line draws it).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from registry import errors
from registry.audit.partitions import ensure_months
from registry.checks import check_service_id
from registry.db.errors import translate_db_errors
from schemas.audit import Action, AuditEntry, Interaction, Outcome
from schemas.records import StaleService
from schemas.types import ServiceStatus, ascii_int

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository
    from registry.db.pool import Connection, Database
    from registry.db.queries import Queries
    from schemas.services import Service

__all__ = ("DEFAULT_STALE_AGE", "OPERATOR", "Job", "JobResult", "LifecycleJobs", "Progress", "parse_age")

_BEFORE_EVERY_IHI = "0" * 16
"""The cursor of a job that has not done a chunk yet: every IHI sorts after it."""

DEFAULT_STALE_AGE = "365d"
"""How long a record not registered again is stale unless the operator says otherwise."""

_MAX_AGE_SECONDS = 100 * 366 * 86400

OPERATOR = "operator"
"""The client a lifecycle command acts as: the operator's, as ``ief-registry token`` does."""


class Directory(Protocol):
    """What the lifecycle commands ask of the services directory (``DirectoryService``, injected)."""

    async def get(self, service_id: str) -> Service:
        """One service (NotFound without it)."""
        ...

    async def set_status(self, service_id: str, status: ServiceStatus) -> Service:
        """Enable, disable or retire a service."""
        ...


class Progress(Protocol):
    """Where a job is: told once when it starts (``done`` > 0 when it resumes) and after every chunk."""

    def update(self, done: int, total: int, changed: int) -> None:
        """``done`` of ``total`` records processed so far (this run and before), ``changed`` by this run."""
        ...


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: its key, parameters and progress."""

    key: str
    params: dict[str, Any]
    cursor: str | None
    processed: int
    total: int
    runs: int


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a run ended: records processed in all (``total``), by this run, changed by this run, and whether it
    resumed an interrupted run (then ``resumed_at`` is where)."""

    total: int
    processed: int
    changed: int
    resumed_at: int
    seconds: float


def parse_age(text: str) -> timedelta:
    """``365d``, ``12h``, ``30m``, ``90s`` or ``2w`` as a duration.

    Raises:
        InvalidInput: not a positive number followed by one of those units.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value, unit = text[:-1], text[-1:]
    number = ascii_int(value, max_digits=6)
    if unit not in units or not number:
        raise errors.InvalidInput(f"an age is a positive number and a unit (s, m, h, d, w), like 365d: not {text!r}")
    return timedelta(seconds=number * units[unit])


class LifecycleJobs:
    """Runs the lifecycle commands on one database, as the operator of instance ``observer``."""

    def __init__(
        self, db: Database, queries: Queries, directory: Directory, audit: AuditRepository, *, observer: str
    ) -> None:
        self._db = db
        self._q = queries
        self._directory = directory
        self._audit = audit
        self._observer = observer

    async def job(self, key: str) -> Job | None:
        """A job by its key (``retire:ID``, ``move:OLD:NEW``, ``stale``), or None."""
        async with self._db.reader() as conn:
            row = await conn.fetchrow(self._q["job_get"], key)
        return None if row is None else _job(row)

    async def retire(self, service_id: str, reason: str, progress: Progress, *, chunk: int) -> JobResult:
        """Retire a service: it is no longer routed or written to, and every active record of it is archived
        as the operator's decision (``reason``; default ``decommissioned``).

        Raises:
            NotFound: no such service.
        """
        sid = check_service_id(service_id, "id")
        await self._directory.set_status(sid, ServiceStatus.RETIRED)
        total = await self._count(sid)
        job = await self._start(f"retire:{sid}", "retire", {"service": sid, "reason": reason}, total)

        async def run(conn: Connection, after: str, last: str) -> list[Any]:
            return list(await conn.fetch(self._q["retire_chunk"], sid, after, last, job.params["reason"], *self._actor))

        return await self._run(job, progress, chunk, lambda c, a, n: self._service_chunk(c, sid, a, n), run,
                               f"services retire {sid}")  # fmt: skip

    async def move(self, old: str, new: str, progress: Progress, *, chunk: int) -> JobResult:
        """Re-point every record of ``old`` to ``new`` (a practice changes gateway vendor): ``old`` is disabled
        first; each record keeps its id and history (change ``moved``, previous service ``old``); where ``new``
        already holds a record for the IHI, that record stands and ``old``'s is archived.

        Raises:
            NotFound: either service is unknown.
            InvalidInput: they are the same, of different kinds, or ``new`` is not enabled.
        """
        src, dst = check_service_id(old, "old"), check_service_id(new, "new")
        source, target = await self._directory.get(src), await self._directory.get(dst)
        if src == dst:
            raise errors.InvalidInput("a service's records move to another service")
        if source.kind is not target.kind:
            raise errors.InvalidInput(f"{src} is a {source.kind} and {dst} a {target.kind}: records move to their kind")
        if not target.status.routes:
            raise errors.InvalidInput(f"{dst} is {target.status}: records move to an enabled service")
        if source.status is ServiceStatus.ENABLED:
            await self._directory.set_status(src, ServiceStatus.DISABLED)
        total = await self._count(src)
        job = await self._start(f"move:{src}:{dst}", "move", {"old": src, "new": dst}, total)

        async def run(conn: Connection, after: str, last: str) -> list[Any]:
            merged = await conn.fetch(self._q["move_chunk_merge"], src, dst, after, last, *self._actor)
            return [*merged, *await conn.fetch(self._q["move_chunk"], src, dst, after, last, *self._actor)]

        return await self._run(job, progress, chunk, lambda c, a, n: self._service_chunk(c, src, a, n), run,
                               f"services move {src} {dst}")  # fmt: skip

    async def stale(self, older_than: timedelta) -> tuple[datetime, list[StaleService]]:
        """The cut-off and, per service, its active records not registered since then."""
        cutoff = datetime.now(UTC) - older_than
        async with self._db.reader() as conn:
            with translate_db_errors():
                rows = await conn.fetch(self._q["stale_report"], cutoff)
        return cutoff, [
            StaleService(
                service_id=r["service_id"], name=r["name"], status=ServiceStatus(r["status"]), records=r["records"],
                oldest=r["oldest"],
            )
            for r in rows
        ]  # fmt: skip

    async def archive_stale(self, older_than: timedelta, progress: Progress, *, chunk: int) -> JobResult:
        """Archive the active records not registered for ``older_than`` (the cut-off is fixed when the job starts;
        a resumed job keeps it). Not an operator's hold: a later registration makes a record active again."""
        cutoff, report = await self.stale(older_than)
        job = await self._start("stale", "stale", {"cutoff": cutoff.isoformat()}, sum(s.records for s in report))
        fixed = datetime.fromisoformat(job.params["cutoff"])

        async def end(conn: Connection, after: str, size: int) -> tuple[str, int] | None:
            row = await conn.fetchrow(self._q["stale_chunk_end"], after, fixed, size)
            return None if row is None else (row["last"], row["n"])

        async def run(conn: Connection, after: str, last: str) -> list[Any]:
            reason = f"stale: not registered since {fixed.date().isoformat()}"
            return list(await conn.fetch(self._q["stale_chunk"], after, last, fixed, reason, *self._actor))

        return await self._run(job, progress, chunk, end, run, "records stale --archive")

    async def publish_backfill(self, target: str, progress: Progress, *, chunk: int) -> JobResult:
        """Queue every IHI with an active ``record`` here for the publication to ``target`` (its backfill); the
        publisher delivers them through the outbox like any later change."""
        async with self._db.reader() as conn:
            with translate_db_errors():
                total = int(await conn.fetchval(self._q["publishing_ihis_count"]))
        job = await self._start(f"publish:{target}", "publish", {"target": target}, total)

        async def end(conn: Connection, after: str, size: int) -> tuple[str, int] | None:
            row = await conn.fetchrow(self._q["publish_chunk_end"], after, size)
            return None if row is None else (row["last"], row["n"])

        async def run(conn: Connection, after: str, last: str) -> list[Any]:
            return list(await conn.fetch(self._q["publish_chunk"], target, after, last))

        return await self._run(job, progress, chunk, end, run, f"federation publish --to {target}")

    @property
    def _actor(self) -> tuple[str, str]:
        return (OPERATOR, self._observer)

    async def _count(self, service_id: str) -> int:
        async with self._db.reader() as conn:
            with translate_db_errors():
                return int(await conn.fetchval(self._q["service_records_count"], service_id))

    async def _start(self, key: str, kind: str, params: dict[str, Any], total: int) -> Job:
        async with self._db.writer() as conn:
            with translate_db_errors():
                row = await conn.fetchrow(self._q["job_start"], key, kind, json.dumps(params), total)
        return _job(row)

    async def _service_chunk(self, conn: Connection, service_id: str, after: str, size: int) -> tuple[str, int] | None:
        row = await conn.fetchrow(self._q["service_chunk_end"], service_id, after, size)
        return None if row is None else (row["last"], row["n"])

    async def _run(self, job: Job, progress: Progress, size: int, end: Any, write: Any, command: str) -> JobResult:
        """Chunk after chunk: find its end, write it, audit it and note the progress, in one transaction."""
        started, processed, changed = time.monotonic(), 0, 0
        cursor, done = job.cursor or _BEFORE_EVERY_IHI, job.processed
        async with self._db.writer() as conn:  # each chunk's audit row needs its month's partition
            with translate_db_errors():
                await ensure_months(conn, self._audit)
        progress.update(done, job.total, 0)
        while True:
            async with self._db.writer() as conn, conn.transaction():
                with translate_db_errors():
                    await conn.execute(self._q["custom_chunk_plans"])
                    found = await end(conn, cursor, size)
                    if found is None:
                        await conn.execute(self._q["job_done"], job.key)
                        break
                    last, count = found
                    rows = await write(conn, cursor, last)
                    await conn.execute(self._q["job_progress"], job.key, last, count)
                    await self._audit.insert(conn, [self._entry(command, job, rows, count)])
            cursor, processed, changed, done = last, processed + count, changed + len(rows), done + count
            progress.update(done, max(job.total, done), changed)
        return JobResult(max(job.total, done), processed, changed, job.processed, time.monotonic() - started)

    def _entry(self, command: str, job: Job, rows: list[Any], count: int) -> AuditEntry:
        """The audit row of one chunk: the operator's command, the patients and records it changed."""
        return AuditEntry(
            recorded=datetime.now(UTC), request_id=f"{job.key}:{job.runs}:{uuid.uuid4().hex[:12]}",
            peer_request_id=None,
            interaction=str(Interaction.BATCH), action=str(Action.UPDATE), outcome=int(Outcome.SUCCESS), status=200,
            detail=f"{command}: {len(rows)} of {count} records changed", method="CLI", path=command, query="",
            client_id=OPERATOR, client_service=self._observer, client_address=None, token_id=None,
            observer=self._observer, patients=tuple(sorted({r["ihi"] for r in rows})),
            records=tuple(str(r["record_id"]) for r in rows if r["record_id"] is not None),
        )  # fmt: skip


def _job(row: Any) -> Job:
    return Job(
        row["job_key"], json.loads(row["params"]), row["cursor_ihi"], row["processed"], row["total"], row["runs"]
    )
