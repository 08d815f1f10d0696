"""A closed month of the audit trail as FHIR Bulk Data NDJSON, and the offline check of such an export.

An export directory holds:

- ``AuditEvent.ndjson``: the month's AuditEvents, one per line, in chain order, each exactly as
  ``GET /fhir/AuditEvent`` renders it (IHE BALP; ``schemas.fhir.audit.audit_event``);
- ``audit-chain.ndjson``: line for line, each event's chain entry and the row it hashes:
  ``{"seq": N, "hash": "<hex>", "row": [<the canonical row>]}``;
- ``checkpoint.jws``: the month's signed checkpoint; ``keys.json``: the instance's public audit keys (JWKS);
- ``manifest.json``: a Bulk Data export manifest (``output`` names ``AuditEvent.ndjson`` and its
  count) whose ``extension`` says what else is here.

``verify_export`` needs nothing else, no database: the checkpoint verifies with a trusted key (the
operator's copy, else ``keys.json``); the chain runs from the checkpoint's ``prevHash`` through
every row to its ``headHash`` with entry numbers from ``firstSeq``; every row lies in the month;
and every AuditEvent line is byte for byte the rendering of its row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date
from itertools import zip_longest
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec
from joserfc import jws
from joserfc.errors import JoseError

from registry.audit.chain import canonical, decode_canonical
from registry.audit.checkpoints import (
    Checkpoint,
    CheckpointInvalid,
    month_label,
    open_checkpoint,
    public_keys,
    read_trusted_keys,
)
from registry.audit.repository import from_beginning
from schemas.fhir.audit import audit_event

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

    from registry.audit.repository import AuditMonth, AuditRepository
    from registry.db.pool import Connection

__all__ = (
    "CHAIN_FILE",
    "CHECKPOINT_FILE",
    "EVENTS_FILE",
    "KEYS_FILE",
    "MANIFEST_FILE",
    "ExportRefused",
    "ExportSummary",
    "ExportVerdict",
    "export_month",
    "find_month",
    "verify_export",
)

EVENTS_FILE = "AuditEvent.ndjson"
CHAIN_FILE = "audit-chain.ndjson"
CHECKPOINT_FILE = "checkpoint.jws"
KEYS_FILE = "keys.json"
MANIFEST_FILE = "manifest.json"
_EXTENSION = "iefAuditExport"
_PROGRESS_EVERY = 1000

Progress = Callable[[int, int], None]
"""Called now and then with the events done so far and the month's total."""

_encoder = msgspec.json.Encoder()


class ExportRefused(RuntimeError):
    """The month cannot be exported (not sealed yet, pruned, unknown) or the directory is not empty."""


class _ChainLine(msgspec.Struct, frozen=True):
    seq: int
    hash: str
    row: msgspec.Raw


class _Manifest(msgspec.Struct, frozen=True, rename="camel"):
    transaction_time: str
    output: list[dict[str, Any]]
    extension: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What ``export_month`` wrote (``key``: the month's first day, ``month`` its label)."""

    key: date
    month: str
    events: int
    head_hash: str
    directory: Path
    size: int


@dataclass(frozen=True, slots=True)
class ExportVerdict:
    """The offline check of an export.

    Attributes:
        ok: everything in it verified.
        month: the month it says it holds.
        events: events checked.
        head_hash: the chain's hash after the last event checked (hex).
        kid: the audit key that signed its checkpoint.
        problem: the first thing that does not verify (None when ok).
    """

    ok: bool
    month: str
    events: int
    head_hash: str
    kid: str
    problem: str | None = None


def _no_progress(_done: int, _total: int) -> None:
    pass


def find_month(months: list[AuditMonth], month: date) -> AuditMonth:
    """The kept month that holds ``month``: itself, or the period that holds the trail from before months.

    Raises:
        ExportRefused: no such month, or it was pruned.
    """
    for candidate in months:
        if candidate.month == month or (from_beginning(candidate.starts) and month < candidate.month):
            if candidate.pruned_at is not None:
                raise ExportRefused(f"{month_label(candidate.month)} was pruned")
            return candidate
    raise ExportRefused(f"the audit trail has no month {month_label(month)}")


def _sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _write(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        _sync(handle)


def _empty_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise ExportRefused(f"{directory} is not empty")


def _finish(directory: Path, manifest: dict[str, Any], checkpoint: str, keys: list[RSAKey]) -> int:
    """Write the small files, sync the directory; the export's size in bytes."""
    _write(directory / CHECKPOINT_FILE, checkpoint.encode() + b"\n")
    _write(directory / KEYS_FILE, _encoder.encode({"keys": [key.as_dict(private=False) for key in keys]}))
    _write(directory / MANIFEST_FILE, _encoder.encode(manifest))
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return sum(path.stat().st_size for path in directory.iterdir())


def _chain_line(seq: int, digest: bytes, row: bytes) -> bytes:
    return b'{"seq":%d,"hash":"%s","row":%s}\n' % (seq, digest.hex().encode(), row)


async def export_month(
    conn: Connection,
    repo: AuditRepository,
    month: date,
    directory: Path,
    *,
    canonical_base: str,
    request: str,
    progress: Progress = _no_progress,
) -> ExportSummary:
    """Write a sealed month into ``directory`` (made if missing; it must be empty), every file synced to disk.

    Raises:
        ExportRefused: the month is not sealed yet or was pruned, or the directory holds files.
    """
    target = find_month(await repo.months(conn), month)
    label, sealed = month_label(target.month), target.checkpoint
    if sealed is None:
        raise ExportRefused(
            f"{label} has no checkpoint yet: a month is sealed once it has ended and the close grace has passed"
        )
    _empty_directory(directory)
    keys = public_keys(pem for _, pem in await repo.signing_keys(conn))
    events = 0
    with (directory / EVENTS_FILE).open("xb") as lines, (directory / CHAIN_FILE).open("xb") as chain:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for walked in repo.export_walk(conn, target):
                if walked.seq is None or walked.hash is None:  # the walk joins entries to rows: never
                    raise ExportRefused(f"row id {walked.event.id} has no chain entry")
                lines.write(_encoder.encode(audit_event(walked.event, canonical_base=canonical_base)) + b"\n")
                chain.write(_chain_line(walked.seq, walked.hash, canonical(walked.event)))
                events += 1
                if events % _PROGRESS_EVERY == 0:
                    progress(events, sealed.rows)
        _sync(lines)
        _sync(chain)
    progress(events, sealed.rows)
    manifest = {
        "transactionTime": sealed.sealed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "request": request,
        "requiresAccessToken": False,
        "output": [{"type": "AuditEvent", "url": EVENTS_FILE, "count": events}],
        "error": [],
        "extension": {
            _EXTENSION: {
                "month": label,
                "canonicalBase": canonical_base,
                "chain": CHAIN_FILE,
                "checkpoint": CHECKPOINT_FILE,
                "keys": KEYS_FILE,
            }
        },
    }
    size = _finish(directory, manifest, sealed.jws, keys)
    return ExportSummary(
        key=target.month, month=label, events=events, head_hash=sealed.head_hash.hex(), directory=directory, size=size
    )


class _Problem(Exception):
    pass


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def verify_export(
    directory: Path, keys: list[RSAKey] | None = None, progress: Progress = _no_progress
) -> ExportVerdict:
    """Check an export against its checkpoint without a database (``keys``: trusted audit keys, else ``keys.json``)."""
    month, kid, events, head = "?", "?", 0, ""
    try:
        manifest = msgspec.json.decode((directory / MANIFEST_FILE).read_bytes(), type=_Manifest)
        canonical_base = str(manifest.extension[_EXTENSION]["canonicalBase"])
        token = (directory / CHECKPOINT_FILE).read_text(encoding="utf-8").strip()
        kid = str(jws.extract_compact(token.encode()).headers().get("kid"))
        checkpoint = open_checkpoint(token, keys if keys is not None else read_trusted_keys(directory / KEYS_FILE))
        month, head = checkpoint.month, checkpoint.prev_hash
        events, head = _check_lines(directory, checkpoint, canonical_base, progress)
        if [out.get("count") for out in manifest.output] != [events]:
            raise _Problem(f"the manifest counts {manifest.output} events, the files hold {events}")
    except (OSError, UnicodeDecodeError, msgspec.DecodeError, KeyError, JoseError, ValueError) as exc:
        problem = str(exc) if isinstance(exc, CheckpointInvalid) else f"{type(exc).__name__}: {exc}"
        return ExportVerdict(ok=False, month=month, events=events, head_hash=head, kid=kid, problem=problem)
    except _Problem as exc:
        return ExportVerdict(ok=False, month=month, events=events, head_hash=head, kid=kid, problem=str(exc))
    return ExportVerdict(ok=True, month=month, events=events, head_hash=head, kid=kid)


def _check_lines(directory: Path, checkpoint: Checkpoint, canonical_base: str, progress: Progress) -> tuple[int, str]:
    """Walk both files in step; the number of events and the hash after the last one."""
    prev, seq, count = bytes.fromhex(checkpoint.prev_hash), checkpoint.first_seq, 0
    starts = checkpoint.starts
    for number, (event_line, chain_line) in enumerate(
        zip_longest(_lines(directory / EVENTS_FILE), _lines(directory / CHAIN_FILE)), start=1
    ):
        if event_line is None or chain_line is None:
            raise _Problem(f"{EVENTS_FILE} and {CHAIN_FILE} differ in length (at line {number})")
        entry = msgspec.json.decode(chain_line, type=_ChainLine)
        if entry.seq != seq:
            raise _Problem(f"line {number}: chain entry {entry.seq} where {seq} follows")
        row = bytes(entry.row)
        digest = hashlib.sha256(prev + row).digest()
        if digest.hex() != entry.hash:
            raise _Problem(f"line {number}: chain entry {seq} does not match its hash")
        event = decode_canonical(row)
        if event.recorded >= checkpoint.ends or (starts is not None and event.recorded < starts):
            raise _Problem(f"line {number}: the event of chain entry {seq} is not of {checkpoint.month}")
        if _encoder.encode(audit_event(event, canonical_base=canonical_base)) + b"\n" != event_line:
            raise _Problem(f"line {number} of {EVENTS_FILE} is not the AuditEvent of chain entry {seq}")
        prev, seq, count = digest, seq + 1, count + 1
        if count % _PROGRESS_EVERY == 0:
            progress(count, checkpoint.rows)
    progress(count, checkpoint.rows)
    if (count, seq - 1, prev.hex()) != (checkpoint.rows, checkpoint.last_seq, checkpoint.head_hash):
        raise _Problem(
            f"the export holds {count} events ending at entry {seq - 1} in {prev.hex()}; its checkpoint seals "
            f"{checkpoint.rows} ending at entry {checkpoint.last_seq} in {checkpoint.head_hash}"
        )
    return count, prev.hex()
