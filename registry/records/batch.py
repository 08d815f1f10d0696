"""One batch of registrations (``POST /registry/records:batch``): every rule of the single write, set-based.

Items are validated one by one (an invalid item, or one of another service than the caller's
unless it holds ``admin``, is reported and skipped; of two items naming the same record the later
wins). Items carrying an ``idempotencyKey`` are claimed in one statement: a key this client sent
within 24 hours answers its first result again (``replayed``) and writes nothing, or is refused
when it answered another item. The rest are copied (``COPY``) into a staging table and written by
one set-based statement, ``merge_batch``, which applies the rules of the single write in SQL
(re-registration, the operator's decisions, type against kind, routable services, security labels
kept unless given); each item's
first result is kept for its key in the same transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from registry import errors
from registry.http import refused_json
from registry.records.idempotency import Answer, Keyed, fingerprint, is_item_key
from schemas import strictjson
from schemas.privacy import parse_labels
from schemas.records import BatchItem, BatchItemResult, BatchResult
from schemas.types import InvalidValueError, invalid_ihis, parse_ihi, parse_service_id

if TYPE_CHECKING:
    from uuid import UUID

    from registry.config import RecordSettings
    from registry.db.pool import Connection
    from registry.records.idempotency import IdempotencyRepository
    from registry.records.repository import BatchRow, RecordRepository, Writer

__all__ = ("Batch", "refusal")

_result_decoder = msgspec.json.Decoder(BatchItemResult)
_encoder = msgspec.json.Encoder()
_Code = errors.ErrorCode

_PROBLEMS: dict[str, tuple[_Code, str]] = {
    "unknown-service": (_Code.UNKNOWN_SERVICE, "the service is not known or not enabled"),
    "type-mismatch": (_Code.TYPE_MISMATCH, "the record's type does not match its service's kind"),
}


def refusal(client_id: str, bound: str, service_id: str) -> str:
    """Why a client may not write a record of another service."""
    return f"client {client_id} is bound to service {bound} and may not write records of {service_id}"


def _error(index: int, code: _Code, message: str, item: BatchItem | None = None) -> BatchItemResult:
    return BatchItemResult(
        index=index, result="error", error=message, code=str(code),
        ihi=item.ihi if item else None, service_id=item.service_id if item else None,
    )  # fmt: skip


def _parse(raw: Any, services: dict[str, str], *, ihi_checked: bool = False) -> BatchItem:
    """One item: a ``BatchItem`` as decoded, a decoded JSON value or an NDJSON line, checked and canonical.

    ``services`` maps service IDs as sent to their canonical spelling (a batch names a service many
    times, checked once); ``ihi_checked``: the IHI was found valid with the batch's others.
    """
    if isinstance(raw, BatchItem):
        item = raw
    else:
        item = msgspec.convert(strictjson.decode(raw) if isinstance(raw, bytes) else raw, BatchItem)
    if item.idempotency_key is not None and not is_item_key(item.idempotency_key):
        raise InvalidValueError("an idempotencyKey is 1 to 255 printable ASCII characters (spaces only between others)")
    service_id = services.get(item.service_id)
    if service_id is None:
        service_id = services[item.service_id] = parse_service_id(item.service_id)
    if not ihi_checked:
        parse_ihi(item.ihi)  # an IHI is valid as it is, or refused
    if item.security_labels is not None:  # canonical: sorted, without repeats
        return msgspec.structs.replace(
            item, service_id=service_id, security_labels=list(parse_labels(item.security_labels))
        )
    if service_id == item.service_id:
        return item
    return msgspec.structs.replace(item, service_id=service_id)


class Batch:
    """One batch request in progress: its per-item results, in request order."""

    def __init__(
        self, repository: RecordRepository, keys: IdempotencyRepository, settings: RecordSettings, writer: Writer
    ) -> None:
        self._repo = repository
        self._keys = keys
        self._settings = settings
        self._writer = writer
        self._results: list[BatchItemResult | None] = []
        self.record_ids: list[UUID] = []
        """The records the batch wrote or left as they were (for its audit row)."""

    def parse(self, items: list[Any]) -> list[tuple[int, BatchItem]]:
        """Validate every item; return the ones to apply, sorted by natural key.

        Raises:
            PayloadTooLarge: more items than ``records.batch_max_items``.
        """
        if len(items) > self._settings.batch_max_items:
            raise errors.PayloadTooLarge(
                f"a batch holds at most {self._settings.batch_max_items} items; this one has {len(items)}"
            )
        self._results = [None] * len(items)
        writer = self._writer
        valid: dict[tuple[str, str], tuple[int, BatchItem]] = {}
        services: dict[str, str] = {}
        # A body decoded as items at once has its IHIs checked together; the others are checked one by one.
        typed = all(isinstance(raw, BatchItem) for raw in items)
        refused = set(invalid_ihis([raw.ihi for raw in items])) if typed else set()
        for index, raw in enumerate(items):
            try:
                item = _parse(raw, services, ihi_checked=typed and index not in refused)
            except strictjson.JsonError as exc:  # an NDJSON line: not JSON, nested too deep, a key repeated
                self._results[index] = _error(index, refused_json(exc).code, str(exc))
                continue
            except (msgspec.ValidationError, InvalidValueError) as exc:
                self._results[index] = _error(index, _Code.INVALID_INPUT, str(exc))
                continue
            if not (writer.admin or writer.service_id == item.service_id):
                message = "forbidden: " + refusal(writer.client_id, writer.service_id, item.service_id)
                self._results[index] = _error(index, _Code.SERVICE_BINDING, message, item)
                continue
            earlier = valid.get((item.ihi, item.service_id))
            if earlier is not None:
                message = f"superseded by item {index}, which names the same record"
                self._results[earlier[0]] = _error(earlier[0], _Code.INVALID_INPUT, message, item)
            valid[(item.ihi, item.service_id)] = (index, item)
        return [pair for _, pair in sorted(valid.items())]  # in key order: concurrent batches cannot deadlock

    async def apply(self, conn: Connection, chosen: list[tuple[int, BatchItem]]) -> BatchResult:
        """Apply the chosen items in the caller's transaction; the per-item results and their counts."""
        keyed = await self._replays(conn, chosen)
        writes = [(index, item) for index, item in chosen if self._results[index] is None]
        rows: dict[int, BatchRow] = {}
        if writes:
            staged = [
                (index, item.ihi, item.service_id, item.status, item.type, item.reason, item.security_labels)
                for index, item in writes
            ]
            rows = await self._repo.merge_batch(conn, staged, self._writer)
        for index, item in writes:
            self._results[index] = self._result(index, item, rows[index])
        self.record_ids = [record_id for index, _ in writes if (record_id := rows[index].record_id) is not None]
        answers = {
            key: Answer(200, _encoder.encode(self._results[index]))
            for key, index in keyed.items()
            if self._results[index] is not None
        }
        await self._keys.keep(conn, self._writer.client_id, answers)
        return self._summary()

    async def _replays(self, conn: Connection, chosen: list[tuple[int, BatchItem]]) -> dict[str, int]:
        """Claim the items' idempotency keys; answer replays and refusals. Returns each claimed key's item."""
        keyed: dict[str, tuple[int, Keyed]] = {}
        for index, item in chosen:
            if item.idempotency_key is None:
                continue
            if item.idempotency_key in keyed:
                message = f"idempotencyKey {item.idempotency_key!r} names another item of this batch too"
                self._results[index] = _error(index, _Code.IDEMPOTENCY_KEY_REUSED, message, item)
                continue
            labels = None if item.security_labels is None else " ".join(item.security_labels)
            print_ = fingerprint("batch-item", item.ihi, item.service_id, item.status, item.type, item.reason, labels)
            keyed[item.idempotency_key] = (index, Keyed(item.idempotency_key, print_))
        if not keyed:
            return {}
        client = self._writer.client_id
        claimed = await self._keys.claim(conn, client, [k for _, k in keyed.values()])
        taken = [key for key in keyed if key not in claimed]
        first = await self._keys.answers(conn, client, taken) if taken else {}
        for key in taken:
            index, mine = keyed[key]
            found = first.get(key)
            if found is None or found[0] != mine.fingerprint:
                message = f"idempotencyKey {key!r} was used by this client within 24 hours for another item"
                self._results[index] = _error(index, _Code.IDEMPOTENCY_KEY_REUSED, message)
            else:
                answered = _result_decoder.decode(found[1].body)
                self._results[index] = msgspec.structs.replace(answered, index=index, replayed=True)
        return {key: keyed[key][0] for key in claimed}

    @staticmethod
    def _result(index: int, item: BatchItem, row: BatchRow) -> BatchItemResult:
        problem = _PROBLEMS.get(row.outcome)
        if problem is not None:
            return _error(index, problem[0], problem[1], item)
        if row.outcome == "held":
            message = (
                f"conflict: the operator set this record to {row.status} ({row.held_reason or 'no reason given'}); "
                "only the operator can change it"
            )
            return _error(index, _Code.OPERATOR_DECISION, message, item)
        return BatchItemResult(
            index=index, result=row.outcome, ihi=item.ihi, service_id=item.service_id, status=row.status,
            type=row.type, last_updated=row.last_updated,
        )  # fmt: skip

    def _summary(self) -> BatchResult:
        final = [r for r in self._results if r is not None]
        names = ("created", "registered", "updated", "unchanged")
        counts = {name: sum(1 for r in final if r.result == name) for name in names}
        return BatchResult(
            created=counts["created"], registered=counts["registered"], updated=counts["updated"],
            unchanged=counts["unchanged"], errors=len(final) - sum(counts.values()), results=final,
        )  # fmt: skip
