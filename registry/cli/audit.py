"""``audit``: the audit trail's hash chain and monthly checkpoints, sealed and verified; months exported,
verified offline and pruned; break-glass disclosures listed for review.

The commands are a few lines each: the work is ``registry.audit.operator``'s, on the database the
runtime opened (the owner's role, the schema at head); what they print and their progress bars are
``registry.cli.audit_console``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session, run_async

if TYPE_CHECKING:
    from registry.audit.export import ExportSummary, ExportVerdict
    from registry.audit.operator import Sealed
    from registry.audit.retention import Pruned
    from schemas.audit import StoredAuditEvent

__all__ = ("audit",)


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain and checkpoints; export, verify and prune months; review break-glass."""


@audit.command("verify")
@click.option("--expect-head", metavar="HASH", help="A head hash printed before: the chain must still pass through it.")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint kept elsewhere (a JWS, or a saved GET /audit/checkpoints): it must still be stored.",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Check an export offline against its checkpoint instead (no database).",
)
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --export: the trusted audit keys (JWKS, or a saved GET /audit/checkpoints).")  # fmt: skip
@click.pass_obj
def audit_verify(
    runtime: Runtime,
    expect_head: str | None,
    checkpoint_file: Path | None,
    export_dir: Path | None,
    key_file: Path | None,
) -> None:
    """Seal pending audit rows, then check every row, checkpoint and anchor; exit 1 naming the first problem."""
    from registry.audit import operator
    from registry.cli import audit_console as console

    settings = runtime.settings()
    if export_dir is not None:
        bar = console.Progress(f"verifying {export_dir}")
        checked = run_async(lambda: console.refusals_as_errors(operator.verify_offline(export_dir, key_file, bar)))
        console.emit(console.offline(checked, export_dir), bar)
        return
    anchor = console.anchor(expect_head, checkpoint_file)

    async def check(session: Session) -> Sealed:
        call = operator.seal_and_verify(session.database, settings, session.service_id, anchor)
        return await console.refusals_as_errors(call)

    console.emit(console.verified(runtime.run(settings, check, at_head=True)))


@audit.command("export")
@click.option("--month", required=True, metavar="YYYY-MM", help="The month to export (closed and checkpointed).")
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="An empty (or new) directory for the export.")  # fmt: skip
@click.pass_obj
def audit_export(runtime: Runtime, month: str, directory: Path) -> None:
    """Write a month as FHIR Bulk Data NDJSON with its checkpoint, read it back against it, and note the export."""
    from registry.audit import operator
    from registry.cli import audit_console as console

    wanted, settings, bar = console.month(month), runtime.settings(), console.Progress(f"exporting {month}")
    request, target = f"ief-registry audit export --month {month}", directory.resolve()

    async def write(session: Session) -> tuple[ExportSummary, ExportVerdict]:
        call = operator.export(session.database, settings, wanted, target, request=request, progress=bar)
        return await console.refusals_as_errors(call)

    console.emit(console.exported(runtime.run(settings, write, at_head=True)), bar)


@audit.command("prune")
@click.option(
    "--before",
    "before",
    metavar="YYYY-MM",
    help="Drop months that end by the start of this month [default: from IEF_AUDIT_RETENTION_MONTHS].",
)
@click.pass_obj
def audit_prune(runtime: Runtime, before: str | None) -> None:
    """Drop the oldest months of the trail; only months exported and verified, and records it in the chain.

    Dropping partitions needs the owner of the audit tables: the role every operator command connects as
    (IEF_DATABASE_OWNER_URL, else IEF_DATABASE_URL).
    """
    from registry.audit import operator
    from registry.cli import audit_console as console

    settings = runtime.settings()
    cut = console.prune_cut(before, settings)

    async def drop(session: Session) -> list[Pruned]:
        return await console.refusals_as_errors(operator.prune_before(session.database, cut, session.service_id))

    console.emit(console.pruned(runtime.run(settings, drop, at_head=True), cut))


@audit.command("break-glass")
@click.option(
    "--since", required=True, help="From when (ISO date or date-time, UTC unless it says otherwise), e.g. 2026-01-01."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def audit_break_glass(runtime: Runtime, since: str, as_json: bool) -> None:
    """Every disclosure made by break-glass since a date, oldest first, for the privacy officer's review."""
    from registry.audit import operator
    from registry.cli import audit_console as console

    start = console.since(since)

    async def listed(session: Session) -> list[StoredAuditEvent]:
        return await operator.break_glass(session.database, start)

    console.emit(console.break_glass(runtime.run(runtime.settings(), listed, at_head=True), start, as_json=as_json))
