"""Record rules: validation, idempotent writes, batches, look-ups. No HTTP in here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from registry import errors
from registry.audit.context import WriteOutcome, note_patients, note_records
from registry.checks import check_ihi, check_service_id
from registry.log import get_logger
from registry.records.lifecycle import WRITE_STATUS, parse_statuses
from schemas import strictjson
from schemas.audit import Action
from schemas.records import (
    BatchItem,
    BatchItemResult,
    BatchResult,
    Record,
    RecordHistory,
    RecordList,
)
from schemas.types import (
    InvalidValueError,
    RecordStatus,
    RecordType,
    invalid_ihis,
    parse_ihi,
    parse_service_id,
)

if TYPE_CHECKING:
    from uuid import UUID

    from registry.audit.trail import AuditTrail
    from registry.auth.scopes import Principal
    from registry.config import RecordSettings
    from registry.db.pool import Database
    from registry.records.repository import BatchRow, RecordRepository, StoredRecord

__all__ = ("RecordService", "Referrals", "check_actor", "to_record")

_log = get_logger(__name__)


def _refusal(actor: Principal, service_id: str) -> str:
    return f"client {actor.client_id} is bound to service {actor.service_id} and may not write records of {service_id}"


def check_actor(actor: Principal, service_id: str) -> None:
    """Refuse a write of another service's record unless the caller holds ``admin``.

    Raises:
        Forbidden: the caller is bound to another service.
    """
    if not actor.may_act_for(service_id):
        raise errors.Forbidden(_refusal(actor, service_id), code=errors.ErrorCode.SERVICE_BINDING)


def _note_read(stored: list[StoredRecord]) -> None:
    """Name the patients and records a read returns in the request's audit row."""
    note_patients(s.ihi for s in stored)
    note_records(s.record_id for s in stored)


def to_record(stored: StoredRecord) -> Record:
    """The wire form of a stored record (with its service's directory entry when the look-up read it)."""
    return Record(
        ihi=stored.ihi,
        service_id=stored.service_id,
        status=stored.status,
        type=stored.type,
        last_updated=stored.last_updated,
        service=stored.service,
    )


class Referrals(Protocol):
    """Follows ``registry`` records to the registries they name (DESIGN §5).

    The records layer declares what it needs; ``registry/server/`` injects the implementation
    (``federation.resolver.Resolver``), so records never import federation.
    """

    async def follow(
        self, ihi: str, found: list[Record], statuses: list[str], *, request_id: str, deadline: float | None = None
    ) -> RecordList:
        """Resolve the ``registry`` records among ``found`` (this registry's own records for ``ihi``).

        ``request_id`` goes to every peer (``IEF-Request-Id``); ``deadline`` (a ``time.monotonic()``
        instant) ends the look-up sooner than its own deadline would.

        Returns every ``record``-type record learned, here and at the registries reached (each with
        ``via``), and ``unresolved``: every referral that could not be followed, with the reason.
        """
        ...


class RecordService:
    """Everything the native API and the FHIR facade do with records.

    Every write commits its request's audit row in its own transaction (``AuditTrail.transaction``);
    reads note the records they return for the request's audit row.
    """

    def __init__(
        self,
        db: Database,
        repository: RecordRepository,
        settings: RecordSettings,
        audit: AuditTrail,
        referrals: Referrals | None = None,
    ) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings
        self._audit = audit
        self._referrals = referrals

    async def put(
        self,
        ihi: str,
        service_id: str,
        status: RecordStatus,
        type_: RecordType,
        *,
        actor: Principal,
        expected_version: int | None = None,
    ) -> tuple[StoredRecord, str]:
        """Create or change one record; repeating an identical write changes nothing.

        With ``expected_version`` the record must exist at that version (checked under a row lock,
        so two writers expecting the same version cannot both succeed).

        Returns:
            The stored record and ``created``, ``updated`` or ``unchanged``.

        Raises:
            Forbidden: ``actor`` is bound to another service and does not hold ``admin``.
            PreconditionFailed: ``expected_version`` is given and the stored record is not at it.
        """
        ihi = check_ihi(ihi)
        service_id = check_service_id(service_id)
        check_actor(actor, service_id)
        if expected_version is None:
            return await self._put_in_one_statement(ihi, service_id, status, type_)
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            if expected_version is not None:
                current = await self._repo.lock_by_key(conn, ihi, service_id)
                if current is None or current.version != expected_version:
                    found = "no such record" if current is None else f"the record is at version {current.version}"
                    raise errors.PreconditionFailed(
                        f"expected version {expected_version}, but {found}", code=errors.ErrorCode.VERSION_MISMATCH
                    )
            stored, outcome = await self._repo.put(conn, ihi=ihi, service_id=service_id, status=status, type_=type_)
            action = Action.CREATE if outcome == "created" else Action.UPDATE
            audit.done(status=WRITE_STATUS[outcome], action=action, records=[stored.record_id], detail=outcome)
        return stored, outcome

    async def _put_in_one_statement(
        self, ihi: str, service_id: str, status: RecordStatus, type_: RecordType
    ) -> tuple[StoredRecord, str]:
        """An unconditional write and its audit row in one statement (one round trip instead of four)."""
        rows = self._audit.rows_for_outcomes(
            {
                outcome: WriteOutcome(
                    status=code, action=Action.CREATE if outcome == "created" else Action.UPDATE, detail=outcome
                )
                for outcome, code in WRITE_STATUS.items()
            }
        )
        async with self._db.writer() as conn:
            if rows is None:
                return await self._repo.put(conn, ihi=ihi, service_id=service_id, status=status, type_=type_)
            stored, outcome = await self._repo.put_audited(
                conn, ihi=ihi, service_id=service_id, status=status, type_=type_, audit_rows=rows
            )
        self._audit.committed()
        return stored, outcome

    async def for_ihi(
        self,
        ihi: str,
        statuses: list[str] | None = None,
        *,
        follow: bool = False,
        request_id: str = "",
        deadline: float | None = None,
        answers: bool = False,
    ) -> RecordList:
        """The records of one IHI: active ones, or those with the statuses asked for.

        ``answers``: the caller answers 200 with what this returns and does nothing more, so a plain
        look-up on the primary may insert the request's audit row in its own statement (when the
        audit trail is idle: ``AuditTrail.idle_read``).

        With ``follow``, ``registry`` records are resolved at the registries they name (peers are
        asked for the same statuses and told ``request_id`` for their audit), within the federation
        limits and by ``deadline`` (a ``time.monotonic()`` instant) if given: the answer holds every
        ``record``-type record learned, with ``via``, and ``unresolved``.

        Raises:
            DependencyUnavailable: ``follow`` on a service built without federation.
        """
        ihi = check_ihi(ihi)
        wanted = parse_statuses(statuses)
        stored: list[StoredRecord] | None = None
        if answers and not follow and not self._db.has_replica:
            with self._audit.idle_read() as row:
                if row is not None:
                    async with self._db.writer() as conn:
                        stored = await self._repo.for_ihi_audited(conn, ihi, wanted, row)
                    self._audit.committed()
        if stored is None:
            async with self._db.reader() as conn:
                stored = await self._repo.for_ihi(conn, ihi, wanted)
        _note_read(stored)
        records = [to_record(s) for s in stored]
        if not follow:
            return RecordList(ihi=ihi, records=records)
        if self._referrals is None:
            raise errors.DependencyUnavailable("this server cannot follow registry records: federation is not set up")
        return await self._referrals.follow(ihi, records, wanted, request_id=request_id, deadline=deadline)

    async def history(self, ihi: str) -> RecordHistory:
        """Every status change of every record of one IHI, oldest first."""
        ihi = check_ihi(ihi)
        async with self._db.reader() as conn:
            entries = await self._repo.history(conn, ihi)
        return RecordHistory(ihi=ihi, history=entries)

    async def by_id(self, record_id: UUID, *, primary: bool = False) -> StoredRecord:
        """One record by its resource id; ``primary`` reads from the primary (a write follows, and a
        replica may not have the record yet).

        Raises:
            NotFound: no such record.
        """
        async with self._db.writer() if primary else self._db.reader() as conn:
            stored = await self._repo.by_id(conn, record_id)
        if stored is None:
            raise errors.NotFound("no such record")
        _note_read([stored])
        return stored

    async def by_key(self, ihi: str, service_id: str) -> StoredRecord | None:
        """One record by its natural key, or None."""
        async with self._db.writer() as conn:
            stored = await self._repo.by_key(conn, ihi, service_id)
        _note_read([stored] if stored else [])
        return stored

    async def search(
        self,
        *,
        ihis: list[str] | None,
        service_ids: list[str] | None,
        record_ids: list[UUID] | None,
        statuses: list[str],
        limit: int,
        offset: int,
    ) -> tuple[list[StoredRecord], int]:
        """A page of records matching the filters (None: any), and the total, for the FHIR search."""
        async with self._db.reader() as conn:
            found, total = await self._repo.search(
                conn, ihis=ihis, service_ids=service_ids, record_ids=record_ids, statuses=statuses,
                limit=limit, offset=offset,
            )  # fmt: skip
        _note_read(found)
        return found, total

    def check_batch_size(self, count: int) -> None:
        """Refuse a batch over the item limit before any of it is applied.

        Raises:
            PayloadTooLarge: more items than ``records.batch_max_items``.
        """
        if count > self._settings.batch_max_items:
            raise errors.PayloadTooLarge(
                f"a batch holds at most {self._settings.batch_max_items} items; this one has {count}"
            )

    async def batch(self, items: list[Any], *, actor: Principal) -> BatchResult:
        """Apply many records: each item validated on its own, all applied in one transaction by one set-based merge.

        ``items`` holds ``BatchItem`` values (a body that decoded as such at once), decoded JSON values,
        or ``bytes`` for NDJSON lines still to be decoded. Invalid items, and items of a service other
        than the caller's (unless it holds ``admin``), are reported and skipped; the rest are applied.
        When the same record appears twice, the later item wins and the earlier one is reported as an
        error.
        """
        self.check_batch_size(len(items))
        results: list[BatchItemResult | None] = [None] * len(items)
        valid: dict[tuple[str, str], tuple[int, BatchItem]] = {}
        services: dict[str, str] = {}  # as sent -> canonical: a batch names a service many times, checked once
        allowed: dict[str, bool] = {}
        # A body decoded as items at once has its IHIs checked together; the others are checked one by one.
        typed = all(isinstance(raw, BatchItem) for raw in items)
        refused = set(invalid_ihis([raw.ihi for raw in items])) if typed else set()
        for index, raw in enumerate(items):
            try:
                item = self._parse_item(raw, services, ihi_checked=typed and index not in refused)
            except (msgspec.ValidationError, strictjson.JsonError, InvalidValueError) as exc:
                results[index] = BatchItemResult(index=index, result="error", error=str(exc))
                continue
            may = allowed.get(item.service_id)
            if may is None:
                may = allowed[item.service_id] = actor.may_act_for(item.service_id)
            if not may:
                results[index] = BatchItemResult(
                    index=index,
                    result="error",
                    ihi=item.ihi,
                    service_id=item.service_id,
                    error="forbidden: " + _refusal(actor, item.service_id),
                )
                continue
            key = (item.ihi, item.service_id)
            earlier = valid.get(key)
            if earlier is not None:
                results[earlier[0]] = BatchItemResult(
                    index=earlier[0],
                    result="error",
                    ihi=item.ihi,
                    service_id=item.service_id,
                    error=f"superseded by item {index}, which names the same record",
                )
            valid[key] = (index, item)
        chosen = [pair for _, pair in sorted(valid.items())]  # in key order: concurrent batches cannot deadlock
        note_patients(item.ihi for _, item in chosen)
        staged = [(index, item.ihi, item.service_id, item.status, item.type) for index, item in chosen]
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            rows = await self._repo.merge_batch(conn, staged)
            summary = self._summarise(results, chosen, rows)
            audit.done(
                status=200,
                records=[rows[index].record_id for index, _ in chosen if index in rows],
                detail=f"batch of {len(items)}: {summary.created} created, {summary.updated} updated, "
                f"{summary.unchanged} unchanged, {summary.errors} failed",
                failed=summary.errors > 0,
            )
        _log.info(
            "batch_applied",
            items=len(items),
            created=summary.created,
            updated=summary.updated,
            unchanged=summary.unchanged,
            errors=summary.errors,
        )
        return summary

    @staticmethod
    def _summarise(
        results: list[BatchItemResult | None], chosen: list[tuple[int, BatchItem]], rows: dict[int, BatchRow]
    ) -> BatchResult:
        """Per-item results in request order (the applied items' from their rows), and the counts."""
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for index, item in chosen:
            row = rows.get(index)
            if row is None:
                results[index] = BatchItemResult(
                    index=index,
                    result="error",
                    ihi=item.ihi,
                    service_id=item.service_id,
                    error="the service is not known or not enabled",
                )
                continue
            counts[row.outcome] += 1
            results[index] = BatchItemResult(
                index=index,
                result=row.outcome,
                ihi=item.ihi,
                service_id=item.service_id,
                status=row.status,
                type=row.type,
                last_updated=row.last_updated,
            )
        final = [r for r in results if r is not None]
        return BatchResult(
            created=counts["created"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            errors=len(final) - sum(counts.values()),
            results=final,
        )

    @staticmethod
    def _parse_item(raw: Any, services: dict[str, str], *, ihi_checked: bool = False) -> BatchItem:
        if isinstance(raw, BatchItem):
            item = raw
        else:
            item = msgspec.convert(strictjson.decode(raw) if isinstance(raw, bytes) else raw, BatchItem)
        service_id = services.get(item.service_id)
        if service_id is None:
            service_id = services[item.service_id] = parse_service_id(item.service_id)
        if not ihi_checked:
            parse_ihi(item.ihi)  # an IHI is valid as it is, or refused
        if service_id == item.service_id:
            return item
        return BatchItem(ihi=item.ihi, service_id=service_id, status=item.status, type=item.type)
