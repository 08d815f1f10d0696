"""The operator's audit commands, behind ``ief-registry audit verify | export | prune | break-glass`` (the CLI
only prints).

Each works on the database the command's runtime opened (``registry.cli.runtime``: the owner's
role, the schema at this release's head); ``verify_offline`` needs no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from registry.audit.chain import ChainBroken, seal
from registry.audit.checkpoints import CheckpointSigner, public_keys, read_trusted_keys
from registry.audit.export import ExportSummary, ExportVerdict, Progress, export_month, verify_export
from registry.audit.repository import AuditRepository
from registry.audit.retention import Pruned, prune
from registry.audit.verify import Anchor, Verdict, verify
from registry.auth.repository import AuthRepository
from registry.auth.wiring import key_ring
from registry.db.queries import load_queries

if TYPE_CHECKING:
    from registry.config import Settings
    from registry.db.pool import Database
    from schemas.audit import StoredAuditEvent

__all__ = ("Sealed", "break_glass", "export", "prune_before", "seal_and_verify", "verify_offline")


@dataclass(frozen=True, slots=True)
class Sealed:
    """``audit verify``: the verdict, and why new rows could not be sealed first (None when they could)."""

    verdict: Verdict
    sealing_failed: str | None


async def _signer(database: Database, settings: Settings, service_id: str) -> CheckpointSigner:
    keys = key_ring(database, AuthRepository(load_queries()), settings)
    await keys.ensure()
    return CheckpointSigner(key=lambda: keys.keys.audit, issuer=service_id)


async def seal_and_verify(database: Database, settings: Settings, service_id: str, anchor: Anchor) -> Sealed:
    """Seal what can be sealed (closing months that are due), then verify the whole trail."""
    repository = AuditRepository(load_queries())
    signer = await _signer(database, settings, service_id)
    failed: str | None = None
    async with database.writer() as conn:
        try:
            grace = settings.audit.close_grace_seconds
            result = await seal(conn, repository, signer, wait=True, close_grace=grace)
            while result.more and (result.sealed or result.checkpointed):  # rows waiting for open transactions stay
                result = await seal(conn, repository, signer, wait=True, close_grace=grace)
        except (ChainBroken, asyncpg.PostgresError) as exc:
            failed = str(exc)
        return Sealed(await verify(conn, repository, anchor), failed)


async def export(
    database: Database, settings: Settings, month: date, directory: Path, *, request: str, progress: Progress
) -> tuple[ExportSummary, ExportVerdict]:
    """Write a sealed month to ``directory``, read it back against its checkpoint and, when it verifies, note it.

    Raises:
        registry.audit.export.ExportRefused: the month cannot be exported (not sealed, pruned), or the
            directory is not empty.
    """
    repository = AuditRepository(load_queries())
    async with database.writer() as conn:
        summary = await export_month(
            conn, repository, month, directory, canonical_base=settings.fhir.canonical_base, request=request,
            progress=progress,
        )  # fmt: skip
        keys = public_keys(pem for _, pem in await repository.signing_keys(conn))
    verdict = verify_export(directory, keys, progress)
    if not verdict.ok:
        return summary, verdict
    async with database.writer() as conn:
        await repository.insert_export(
            conn, summary.key, bytes.fromhex(verdict.head_hash), verdict.events, str(summary.directory)
        )
    return summary, verdict


async def verify_offline(directory: Path, key_file: Path | None, progress: Progress) -> ExportVerdict:
    """Check an export with no database, against ``key_file`` (else the keys the export carries).

    Raises:
        registry.audit.checkpoints.CheckpointInvalid: ``key_file`` holds no usable key.
    """
    return verify_export(directory, read_trusted_keys(key_file) if key_file else None, progress)


async def prune_before(database: Database, before: date, service_id: str) -> list[Pruned]:
    """Drop the months that end by ``before``, once each was exported and verified (the owner's connection)."""
    async with database.writer() as conn:
        return await prune(conn, AuditRepository(load_queries()), before, observer=service_id)


async def break_glass(database: Database, since: datetime) -> list[StoredAuditEvent]:
    """Every disclosure made by break-glass since ``since``, oldest first."""
    async with database.reader() as conn:
        return await AuditRepository(load_queries()).break_glass(conn, since)
