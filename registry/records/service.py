"""Record rules: validation, idempotent writes, batches, look-ups. No HTTP in here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from registry import errors
from registry.audit.context import WriteOutcome, note_patients, note_records
from registry.checks import check_ihi, check_service_id
from registry.log import get_logger
from registry.records.batch import Batch, refusal
from registry.records.idempotency import Answer, Keyed, fingerprint, in_progress, reused
from registry.records.lifecycle import WRITE_STATUS, check_labels, parse_statuses, shows_unrouted, to_record
from registry.records.repository import Writer
from schemas.audit import Action
from schemas.records import BatchResult, RecordHistory, RecordList
from schemas.types import RecordStatus, RecordType

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from registry.audit.trail import AuditTrail
    from registry.auth.requester import Requester
    from registry.auth.scopes import Principal
    from registry.config import RecordSettings
    from registry.db.pool import Connection, Database
    from registry.privacy.decision import Disclosure
    from registry.records.disclosure import Disclosures
    from registry.records.idempotency import IdempotencyRepository
    from registry.records.referrals import Referrals
    from registry.records.repository import RecordRepository, RecordVersion, StoredRecord
    from schemas.audit import AuditEntry
    from schemas.privacy import PatientPolicy

__all__ = ("Idempotent", "Put", "RecordService", "check_actor", "writer_of")

_log = get_logger(__name__)


def check_actor(actor: Principal, service_id: str) -> None:
    """Refuse a write of another service's record unless the caller holds ``admin``.

    Raises:
        Forbidden: the caller is bound to another service.
    """
    if not actor.may_act_for(service_id):
        raise errors.Forbidden(
            refusal(actor.client_id, actor.service_id, service_id), code=errors.ErrorCode.SERVICE_BINDING
        )


def _note_read(stored: list[StoredRecord]) -> None:
    """Name the patients and records a read returns in the request's audit row."""
    note_patients(s.ihi for s in stored)
    note_records(s.record_id for s in stored)


@dataclass(frozen=True, slots=True)
class Idempotent:
    """What a write with an ``Idempotency-Key`` adds: the key, which route it came through (part of the
    request's fingerprint), and how its answer is rendered (so the first answer can be kept)."""

    key: str
    route: str
    render: Callable[[StoredRecord, str], Answer]


@dataclass(frozen=True, slots=True)
class Put:
    """A single write's result: the record and the outcome, or the first answer to its key again."""

    record: StoredRecord
    outcome: str
    replay: Answer | None = None


def writer_of(actor: Principal) -> Writer:
    """The actor of a request's write, as its record and history keep it."""
    return Writer(actor.client_id, actor.service_id, actor.is_admin)


class RecordService:
    """Everything the native API and the FHIR facade do with records.

    Every write commits its request's audit row in its own transaction (``AuditTrail.transaction``);
    reads pass what they found through the privacy decision point (``disclosure.py``), after the
    routing rule (``routable_service()``) left out the services that are not routed, and note the
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
        *,
        keys: IdempotencyRepository,
    ) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings
        self._audit = audit
        self._disclosures = disclosures
        self._referrals = referrals
        self._keys = keys

    async def put(
        self,
        ihi: str,
        service_id: str,
        status: RecordStatus,
        type_: RecordType,
        *,
        actor: Principal,
        reason: str | None = None,
        expected_version: int | None = None,
        idempotent: Idempotent | None = None,
        only_new: bool = False,
        labels: list[str] | None = None,
    ) -> Put:
        """Create, re-register or change one record (each accepted write is an event; section 11 of DESIGN).
        ``labels`` are its security labels (None: keep the stored ones).

        With ``expected_version`` the record must exist at that version (checked under a row lock,
        so two writers expecting the same version cannot both succeed). With ``only_new`` (a conditional
        create that matched nothing) a record that exists by the time of the write is the answer
        (``unchanged``) and nothing is written: of conditional creates at once, one creates and none
        re-registers. With ``idempotent``, a key
        this client sent within 24 hours answers its first answer again and writes nothing.

        Returns:
            The stored record and ``created``, ``registered``, ``updated`` or ``unchanged`` (or the replay).

        Raises:
            Forbidden: ``actor`` is bound to another service and does not hold ``admin``.
            PreconditionFailed: ``expected_version`` is given and the stored record is not at it.
            Conflict: the operator removed or archived the record and ``actor`` is not the operator;
                or the request's key is still in flight.
            InvalidInput: the type does not match the service's kind; the key was used for another request.
        """
        ihi = check_ihi(ihi)
        service_id = check_service_id(service_id)
        check_actor(actor, service_id)
        labels = check_labels(labels)
        writer = writer_of(actor)
        if expected_version is None and idempotent is None and not only_new:
            return await self._put_in_one_statement(ihi, service_id, status, type_, writer, reason, labels)
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            keyed: Keyed | None = None
            if idempotent is not None:
                keyed = Keyed(idempotent.key, fingerprint(idempotent.route, ihi, service_id, status, type_, reason,
                                                          expected_version, labels))  # fmt: skip
                first = await self._first_answer(conn, writer.client_id, keyed)
                if first is not None:
                    audit.done(status=first.status, detail="replayed: the first answer to this Idempotency-Key")
                    return Put(await self._stored(conn, ihi, service_id), "replayed", first)
            if expected_version is not None:
                current = await self._repo.lock_by_key(conn, ihi, service_id)
                if current is None or current.version != expected_version:
                    found = "no such record" if current is None else f"the record is at version {current.version}"
                    raise errors.PreconditionFailed(
                        f"expected version {expected_version}, but {found}", code=errors.ErrorCode.VERSION_MISMATCH
                    )
            if only_new:
                await self._repo.lock_key(conn, ihi, service_id)
                existing = await self._repo.lock_by_key(conn, ihi, service_id)
                if existing is not None:
                    note_records([existing.record_id])
                    audit.done(status=WRITE_STATUS["unchanged"], detail="conditional create: the record exists")
                    return Put(existing, "unchanged")
            stored, outcome = await self._repo.put(
                conn, ihi=ihi, service_id=service_id, status=status, type_=type_, writer=writer, reason=reason,
                labels=labels,
            )  # fmt: skip
            if idempotent is not None and keyed is not None:
                await self._keys.keep(conn, writer.client_id, {keyed.key: idempotent.render(stored, outcome)})
            action = Action.CREATE if outcome == "created" else Action.UPDATE
            audit.done(status=WRITE_STATUS[outcome], action=action, records=[stored.record_id], detail=outcome)
        return Put(stored, outcome)

    async def _first_answer(self, conn: Connection, client_id: str, keyed: Keyed) -> Answer | None:
        """Claim ``keyed`` for this transaction, or the first answer to it (None: claimed, go on and write).

        Raises:
            Conflict: a request with the same key is in flight.
            InvalidInput: the key answered another request.
        """
        if not await self._keys.try_lock(conn, client_id, keyed.key):
            raise in_progress(keyed.key)
        await self._keys.purge_now_and_then(conn)
        if await self._keys.claim(conn, client_id, [keyed]):
            return None
        found = (await self._keys.answers(conn, client_id, [keyed.key])).get(keyed.key)
        if found is None:  # forgotten between the claim and the look-up: claim again
            await self._keys.claim(conn, client_id, [keyed])
            return None
        if found[0] != keyed.fingerprint:
            raise reused(keyed.key)
        return found[1]

    async def _stored(self, conn: Connection, ihi: str, service_id: str) -> StoredRecord:
        stored = await self._repo.by_key(conn, ihi, service_id)
        if stored is None:  # a replay of a write that created the record: it exists
            raise errors.NotFound("no such record")
        note_records([stored.record_id])
        return stored

    async def _put_in_one_statement(
        self, ihi: str, service_id: str, status: RecordStatus, type_: RecordType, writer: Writer, reason: str | None,
        labels: list[str] | None,
    ) -> Put:  # fmt: skip
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
                return Put(*await self._repo.put(
                    conn, ihi=ihi, service_id=service_id, status=status, type_=type_, writer=writer, reason=reason,
                    labels=labels,
                ))  # fmt: skip
            stored, outcome = await self._repo.put_audited(
                conn, ihi=ihi, service_id=service_id, status=status, type_=type_, writer=writer, reason=reason,
                labels=labels, audit_rows=rows,
            )  # fmt: skip
        self._audit.committed()
        return Put(stored, outcome)

    async def for_ihi(
        self,
        ihi: str,
        statuses: list[str] | None = None,
        *,
        requester: Requester,
        follow: bool = False,
        request_id: str = "",
        deadline: float | None = None,
        answers: bool = False,
    ) -> RecordList:
        """The records of one IHI that may be disclosed to ``requester``: active ones, or those with the
        statuses asked for; ``withheld`` when the decision point withheld any (a withheld ``registry``
        record is not followed: its registry is not asked).

        ``answers``: the caller answers 200 with what this returns and does nothing more, so a plain
        look-up on the primary may insert the request's audit row in its own statement (when the
        audit trail is idle: ``AuditTrail.idle_read``).

        With ``follow``, ``registry`` records are resolved at the registries they name (peers are
        asked for the same statuses and told ``request_id`` for their audit), within the federation
        limits and by ``deadline`` (a ``time.monotonic()`` instant) if given: the answer holds every
        ``record``-type record learned, with ``via``, and ``unresolved``.

        Records of services that are not routed are left out silently (``disclosed``); only an
        operator who widened ``statuses`` sees them, marked.

        Raises:
            DependencyUnavailable: ``follow`` on a service built without federation.
        """
        ihi = check_ihi(ihi)
        wanted = parse_statuses(statuses)
        unrouted = shows_unrouted(statuses, operator=requester.operator)
        read: tuple[Disclosure[StoredRecord], PatientPolicy] | None = None
        if answers and not follow and not self._db.has_replica:
            with self._audit.idle_read() as row:
                if row is not None:
                    async with self._db.writer() as conn:
                        read = await self.disclosed(conn, ihi, wanted, requester, unrouted=unrouted, audit_row=row)
        if read is None:
            async with self._db.writer() if self._disclosures.needs_primary(ihi) else self._db.reader() as conn:
                read = await self.disclosed(conn, ihi, wanted, requester, unrouted=unrouted)
        shown, policy = read
        records = [to_record(s) for s in shown.disclosed]
        if not follow:
            return RecordList(ihi=ihi, records=records, withheld=shown.withheld > 0)
        if self._referrals is None:
            raise errors.DependencyUnavailable("this server cannot follow registry records: federation is not set up")
        found = await self._routed(
            await self._referrals.follow(
                ihi, records, wanted, request_id=request_id, deadline=deadline, requester=requester
            )
        )
        learned = self._disclosures.learned(requester, policy, [r for r in found.records if r.via])
        kept = [r for r in found.records if not r.via] + learned.disclosed
        kept.sort(key=lambda r: (len(r.via or ()), r.service_id))
        withheld = found.withheld or shown.withheld > 0 or learned.withheld > 0
        return msgspec.structs.replace(found, records=kept, withheld=withheld)

    async def disclosed(
        self,
        conn: Connection,
        ihi: str,
        statuses: list[str],
        requester: Requester,
        *,
        unrouted: bool,
        audit_row: AuditEntry | None = None,
    ) -> tuple[Disclosure[StoredRecord], PatientPolicy]:
        """The seam where the records of one patient are selected for a disclosure (look-ups, ``follow``,
        ``$locate``, the broker), noted for the request's audit row; with the patient's compiled Consents.

        The routing rule applies first (``routable_service()`` in SQL: records of disabled and retired
        services are left out silently unless ``unrouted``, an operator's widened look-up); the privacy
        decision point then decides what of the rest ``requester`` is shown, and counts what it withheld.

        With ``audit_row`` (``conn`` is the primary's; ``AuditTrail.idle_read``) the read's statement
        inserts the request's audit row too, but only when the decision point has nothing to decide (no
        Consent of the patient, no record labelled for a clearance: everything found is disclosed, and
        the row names exactly that). Otherwise the statement inserts nothing and the request is audited
        as any read, after the decision, with what was withheld.
        """
        if audit_row is None:
            stored = await self._repo.for_ihi(conn, ihi, statuses, unrouted=unrouted)
        else:
            stored, audited = await self._repo.for_ihi_audited(conn, ihi, statuses, audit_row, unrouted=unrouted)
            if audited:
                self._audit.committed()
        note_patients([ihi])
        shown = self._disclosures.records(requester, stored)
        _note_read(shown.disclosed)
        return shown, stored[0].policy if stored else ()

    async def _routed(self, found: RecordList) -> RecordList:
        """Leave out records learned at other registries that name a service this registry does not route to."""
        learned = sorted({r.service_id for r in found.records if r.via})
        if not learned:
            return found
        async with self._db.reader() as conn:
            unrouted = await self._repo.unrouted(conn, learned)
        if not unrouted:
            return found
        kept = [r for r in found.records if not (r.via and r.service_id in unrouted)]
        return msgspec.structs.replace(found, records=kept)

    async def history(self, ihi: str, *, requester: Requester) -> RecordHistory:
        """Every change of every record of one IHI that may be disclosed to ``requester``, oldest first, each
        with who made it and the security labels the record had then."""
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

    async def version(self, record_id: UUID, version: int, *, requester: Requester) -> RecordVersion:
        """One version of a record (FHIR vread), decided as a disclosure on the labels it had then.

        Raises:
            NotFound: no such record, or no such version of it.
            Forbidden: the version is withheld from ``requester``.
        """
        async with self._db.reader() as conn:
            found = await self._repo.version(conn, record_id, version)
            if found is None:
                exists = await self._repo.by_id(conn, record_id)
                raise errors.NotFound("no such version of the record" if exists else "no such record")
        note_patients([found.record.ihi])
        self._disclosures.one(requester, found.record)
        _note_read([found.record])
        return found

    async def versions(
        self, record_id: UUID, *, requester: Requester, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[RecordVersion], int, bool]:
        """A page of one record's versions that may be disclosed to ``requester``, newest first, their count
        (less what this page withheld) and whether any was withheld (FHIR instance history).

        Raises:
            NotFound: no such record.
        """
        async with self._db.reader() as conn:
            found, total = await self._repo.versions(conn, record_id, since=since, limit=limit, offset=offset)
            if not found and await self._repo.by_id(conn, record_id) is None:
                raise errors.NotFound("no such record")
        return self._shown_versions(requester, found, total)

    async def all_versions(
        self, *, requester: Requester, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[RecordVersion], int, bool]:
        """A page of the versions of every record the caller may list, newest first (FHIR type history): its own
        service's records, or every record for ``admin``; each decided for ``requester``, as ``versions``."""
        services = None if requester.operator else [requester.service_id]
        async with self._db.reader() as conn:
            found, total = await self._repo.all_versions(
                conn, service_ids=services, since=since, limit=limit, offset=offset
            )
        return self._shown_versions(requester, found, total)

    def _shown_versions(
        self, requester: Requester, found: list[RecordVersion], total: int
    ) -> tuple[list[RecordVersion], int, bool]:
        shown = self._disclosures.versions(requester, found)
        note_patients(v.record.ihi for v in found)
        _note_read([v.record for v in shown.disclosed])
        return shown.disclosed, total - shown.withheld, shown.withheld > 0

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
        unrouted: bool = False,
    ) -> tuple[list[StoredRecord], int, bool]:
        """A page of the records matching the filters (None: any) that may be disclosed to ``requester``,
        the total (less what this page withheld) and whether anything was withheld, for the FHIR search;
        records of services that are not routed only with ``unrouted`` (``shows_unrouted``).

        Raises:
            Forbidden: the search lists another service's patients without naming one (``enumeration``).
        """
        self._disclosures.check_enumeration(requester, ihis, service_ids)
        async with self._db.reader() as conn:
            found, total = await self._repo.search(
                conn, ihis=ihis, service_ids=service_ids, record_ids=record_ids, statuses=statuses,
                unrouted=unrouted, limit=limit, offset=offset,
            )  # fmt: skip
        shown = self._disclosures.records(requester, found)
        _note_read(shown.disclosed)
        return shown.disclosed, total - shown.withheld, shown.withheld > 0

    async def batch(self, items: list[Any], *, actor: Principal) -> BatchResult:
        """Apply many records: each item validated on its own, all applied in one transaction (chunked
        statements) with every rule of the single write; see ``registry.records.batch``.

        Raises:
            PayloadTooLarge: more items than ``records.batch_max_items``.
        """
        batch = Batch(self._repo, self._keys, self._settings, writer_of(actor))
        chosen = batch.parse(items)
        note_patients(item.ihi for _, item in chosen)
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            summary = await batch.apply(conn, chosen)
            audit.done(
                status=200,
                records=batch.record_ids,
                detail=f"batch of {len(items)}: {summary.created} created, {summary.registered} registered, "
                f"{summary.updated} updated, {summary.unchanged} unchanged, {summary.errors} failed",
                failed=summary.errors > 0,
            )
        _log.info(
            "batch_applied", items=len(items), created=summary.created, registered=summary.registered,
            updated=summary.updated, unchanged=summary.unchanged, errors=summary.errors,
        )  # fmt: skip
        return summary
