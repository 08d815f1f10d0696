"""Record rules: validation, idempotent writes, batches, look-ups. No HTTP in here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from registry import errors
from registry.audit.context import WriteOutcome, note_patients, note_records
from registry.checks import check_ihi, check_service_id
from registry.log import get_logger
from registry.records.lifecycle import WRITE_STATUS, check_labels, parse_statuses, to_record
from schemas import strictjson
from schemas.audit import Action
from schemas.privacy import parse_labels
from schemas.records import (
    BatchItem,
    BatchItemResult,
    BatchResult,
    RecordHistory,
    RecordList,
)
from schemas.types import InvalidValueError, RecordStatus, RecordType, parse_ihi, parse_service_id

if TYPE_CHECKING:
    from uuid import UUID

    from registry.audit.trail import AuditTrail
    from registry.auth.requester import Requester
    from registry.auth.scopes import Principal
    from registry.config import RecordSettings
    from registry.db.pool import Database
    from registry.records.disclosure import Disclosures
    from registry.records.referrals import Referrals
    from registry.records.repository import BatchRow, RecordRepository, StoredRecord

__all__ = ("RecordService", "check_actor", "to_record")

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


class RecordService:
    """Everything the native API and the FHIR facade do with records.

    Every write commits its request's audit row in its own transaction (``AuditTrail.transaction``);
    reads pass what they found through the privacy decision point (``disclosure.py``) and note the
    records they return for the request's audit row.
    """

    def __init__(
        self,
        db: Database,
        repository: RecordRepository,
        settings: RecordSettings,
        audit: AuditTrail,
        disclosures: Disclosures,
        referrals: Referrals | None = None,
    ) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings
        self._audit = audit
        self._disclosures = disclosures
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
        labels: list[str] | None = None,
    ) -> tuple[StoredRecord, str]:
        """Create or change one record; repeating an identical write changes nothing. ``labels`` are its
        security labels (None: keep the stored ones).

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
        labels = check_labels(labels)
        if expected_version is None:
            return await self._put_in_one_statement(ihi, service_id, status, type_, labels)
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            if expected_version is not None:
                current = await self._repo.lock_by_key(conn, ihi, service_id)
                if current is None or current.version != expected_version:
                    found = "no such record" if current is None else f"the record is at version {current.version}"
                    raise errors.PreconditionFailed(
                        f"expected version {expected_version}, but {found}", code=errors.ErrorCode.VERSION_MISMATCH
                    )
            stored, outcome = await self._repo.put(
                conn, ihi=ihi, service_id=service_id, status=status, type_=type_, labels=labels
            )
            action = Action.CREATE if outcome == "created" else Action.UPDATE
            audit.done(status=WRITE_STATUS[outcome], action=action, records=[stored.record_id], detail=outcome)
        return stored, outcome

    async def _put_in_one_statement(
        self, ihi: str, service_id: str, status: RecordStatus, type_: RecordType, labels: list[str] | None
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
                return await self._repo.put(
                    conn, ihi=ihi, service_id=service_id, status=status, type_=type_, labels=labels
                )
            stored, outcome = await self._repo.put_audited(
                conn, ihi=ihi, service_id=service_id, status=status, type_=type_, labels=labels, audit_rows=rows
            )
        self._audit.committed()
        return stored, outcome

    async def for_ihi(
        self,
        ihi: str,
        statuses: list[str] | None = None,
        *,
        requester: Requester,
        follow: bool = False,
        request_id: str = "",
        deadline: float | None = None,
    ) -> RecordList:
        """The records of one IHI that may be disclosed to ``requester``: active ones, or those with the
        statuses asked for; ``withheld`` when the decision point withheld any (a withheld ``registry``
        record is not followed: its registry is not asked).

        With ``follow``, ``registry`` records are resolved at the registries they name (peers are
        asked for the same statuses and told ``request_id`` for their audit), within the federation
        limits and by ``deadline`` (a ``time.monotonic()`` instant) if given: the answer holds every
        ``record``-type record learned, with ``via``, and ``unresolved``.

        Raises:
            DependencyUnavailable: ``follow`` on a service built without federation.
        """
        ihi = check_ihi(ihi)
        wanted = parse_statuses(statuses)
        async with self._db.writer() if self._disclosures.needs_primary(ihi) else self._db.reader() as conn:
            stored = await self._repo.for_ihi(conn, ihi, wanted)
        note_patients([ihi])
        shown = self._disclosures.records(requester, stored)
        _note_read(shown.disclosed)
        records = [to_record(s) for s in shown.disclosed]
        if not follow:
            return RecordList(ihi=ihi, records=records, withheld=shown.withheld > 0)
        if self._referrals is None:
            raise errors.DependencyUnavailable("this server cannot follow registry records: federation is not set up")
        found = await self._referrals.follow(
            ihi, records, wanted, request_id=request_id, deadline=deadline, requester=requester
        )
        policy = stored[0].policy if stored else ()
        learned = self._disclosures.learned(requester, policy, [r for r in found.records if r.via])
        kept = [r for r in found.records if not r.via] + learned.disclosed
        kept.sort(key=lambda r: (len(r.via or ()), r.service_id))
        withheld = found.withheld or shown.withheld > 0 or learned.withheld > 0
        return msgspec.structs.replace(found, records=kept, withheld=withheld)

    async def history(self, ihi: str, *, requester: Requester) -> RecordHistory:
        """Every status change of every record of one IHI that may be disclosed to ``requester``, oldest first."""
        ihi = check_ihi(ihi)
        async with self._db.writer() if self._disclosures.needs_primary(ihi) else self._db.reader() as conn:
            changes = await self._repo.history(conn, ihi)
        shown = self._disclosures.history(requester, changes)
        return RecordHistory(ihi=ihi, history=shown.disclosed, withheld=shown.withheld > 0)

    async def by_id(
        self, record_id: UUID, *, requester: Requester | None = None, primary: bool = False
    ) -> StoredRecord:
        """One record by its resource id; ``primary`` reads from the primary (a write follows, and a
        replica may not have the record yet). With ``requester`` it is a disclosure, decided as such
        (without: a write reads the record it changes).

        Raises:
            NotFound: no such record.
            Forbidden: the record is withheld from ``requester``.
        """
        async with self._db.writer() if primary else self._db.reader() as conn:
            stored = await self._repo.by_id(conn, record_id)
        if stored is None:
            raise errors.NotFound("no such record")
        note_patients([stored.ihi])
        if requester is not None:
            self._disclosures.one(requester, stored)
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
        requester: Requester,
    ) -> tuple[list[StoredRecord], int, bool]:
        """A page of the records matching the filters (None: any) that may be disclosed to ``requester``,
        the total (less what this page withheld) and whether anything was withheld, for the FHIR search.

        Raises:
            Forbidden: the search lists another service's patients without naming one (``enumeration``).
        """
        self._disclosures.check_enumeration(requester, ihis, service_ids)
        async with self._db.reader() as conn:
            found, total = await self._repo.search(
                conn, ihis=ihis, service_ids=service_ids, record_ids=record_ids, statuses=statuses,
                limit=limit, offset=offset,
            )  # fmt: skip
        shown = self._disclosures.records(requester, found)
        _note_read(shown.disclosed)
        return shown.disclosed, total - shown.withheld, shown.withheld > 0

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
        """Apply many records: each item validated on its own, all applied in one transaction (chunked statements).

        ``items`` holds decoded JSON values, or ``bytes`` for NDJSON lines still to be decoded.
        Invalid items, and items of a service other than the caller's (unless it holds ``admin``),
        are reported and skipped; the rest are applied. When the same record appears twice, the
        later item wins and the earlier one is reported as an error.
        """
        self.check_batch_size(len(items))
        results: list[BatchItemResult | None] = [None] * len(items)
        valid: dict[tuple[str, str], tuple[int, BatchItem]] = {}
        for index, raw in enumerate(items):
            try:
                item = self._parse_item(raw)
            except (msgspec.ValidationError, strictjson.JsonError, InvalidValueError) as exc:
                results[index] = BatchItemResult(index=index, result="error", error=str(exc))
                continue
            if not actor.may_act_for(item.service_id):
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
        chosen = sorted(valid.values(), key=lambda pair: (pair[1].ihi, pair[1].service_id))
        note_patients(item.ihi for _, item in chosen)
        size = self._settings.batch_chunk_size
        rows: dict[int, BatchRow] = {}
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            await self._repo.plan_batches(conn)
            for start in range(0, len(chosen), size):
                chunk = chosen[start : start + size]
                rows |= await self._repo.put_many(
                    conn,
                    ords=[index for index, _ in chunk],
                    ihis=[item.ihi for _, item in chunk],
                    service_ids=[item.service_id for _, item in chunk],
                    statuses=[str(item.status) for _, item in chunk],
                    types=[str(item.type) for _, item in chunk],
                    labels=[
                        None if item.security_labels is None else " ".join(item.security_labels) for _, item in chunk
                    ],
                )
            summary = self._summarise(results, chosen, rows)
            audit.done(
                status=200,
                records=[row.record_id for row in rows.values()],
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
        counts = {name: sum(1 for r in final if r.result == name) for name in ("created", "updated", "unchanged")}
        return BatchResult(
            created=counts["created"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            errors=len(final) - sum(counts.values()),
            results=final,
        )

    @staticmethod
    def _parse_item(raw: Any) -> BatchItem:
        value = strictjson.decode(raw) if isinstance(raw, bytes) else raw
        item = msgspec.convert(value, BatchItem)
        return BatchItem(
            ihi=parse_ihi(item.ihi),
            service_id=parse_service_id(item.service_id),
            status=item.status,
            type=item.type,
            security_labels=None if item.security_labels is None else list(parse_labels(item.security_labels)),
        )
