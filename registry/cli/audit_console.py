"""The terminal side of ``ief-registry audit …``: options read, progress bars, what each command prints.

``registry/cli/audit.py`` declares the commands and calls ``registry.audit.operator`` through these;
nothing here touches the database. A refusal becomes a ``click.ClickException`` (exit 1 with its
message); a check that fails is a ``Report`` that is not ``ok`` (its lines on stderr, exit 1).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, TypeVar

import click
import msgspec

from registry.audit.checkpoints import CheckpointInvalid, month_label, parse_month, read_checkpoint_file
from registry.audit.export import ExportRefused
from registry.audit.retention import PruneRefused, default_before
from registry.audit.verify import Anchor
from registry.cli.progress import TerminalBar

if TYPE_CHECKING:
    from pathlib import Path

    from registry.audit.export import ExportSummary, ExportVerdict
    from registry.audit.operator import Sealed
    from registry.audit.retention import Pruned
    from registry.config import Settings
    from schemas.audit import StoredAuditEvent

__all__ = (
    "Progress",
    "Report",
    "anchor",
    "break_glass",
    "emit",
    "exported",
    "month",
    "offline",
    "prune_cut",
    "pruned",
    "refusals_as_errors",
    "since",
    "verified",
)

T = TypeVar("T")


class Progress:
    """A progress bar on stderr when it is a terminal, one per pass (writing, then reading back)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: TerminalBar | None = None
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None or self._shown > done:  # a new pass
            self.close()
            self._bar = TerminalBar(self._label)
        self._bar.draw(done, total)
        self._shown = done

    def close(self) -> None:
        """End the bar's line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass(frozen=True, slots=True)
class Report:
    """What a command prints: on stdout when ``ok``, else on stderr with exit status 1; ``notes`` on stderr
    after them (a summary that must not mix with lines a program reads)."""

    ok: bool
    lines: list[str]
    notes: list[str] = field(default_factory=list)


def emit(report: Report, progress: Progress | None = None) -> None:
    """Print a report (ending any progress bar first); exit 1 when it is not ok."""
    if progress is not None:
        progress.close()
    for line in report.lines:
        click.echo(line, err=not report.ok)
    for note in report.notes:
        click.echo(note, err=True)
    if not report.ok:
        sys.exit(1)


async def refusals_as_errors(call: Awaitable[T]) -> T:
    """Await an audit operation; its refusals become command-line errors."""
    try:
        return await call
    except (ExportRefused, PruneRefused, CheckpointInvalid) as exc:
        raise click.ClickException(str(exc)) from None


def month(value: str) -> date:
    """A ``YYYY-MM`` option."""
    try:
        return parse_month(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def anchor(expect_head: str | None, checkpoint_file: Path | None) -> Anchor:
    """The anchors of ``audit verify`` from its options."""
    try:
        head = bytes.fromhex(expect_head) if expect_head else None
        return Anchor(head_hash=head, checkpoint=read_checkpoint_file(checkpoint_file) if checkpoint_file else None)
    except (ValueError, CheckpointInvalid) as exc:
        raise click.ClickException(f"bad anchor: {exc}") from None


def since(value: str) -> datetime:
    """A ``--since`` option: an ISO date or date-time, UTC unless it says otherwise."""
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"--since {value!r} is not an ISO date or date-time") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def prune_cut(before: str | None, settings: Settings) -> date:
    """The first month ``audit prune`` keeps: ``--before``, else the retention policy."""
    if before is not None:
        return month(before)
    if not settings.audit.retention_months:
        raise click.ClickException("give --before YYYY-MM, or set IEF_AUDIT_RETENTION_MONTHS")
    return default_before(settings.audit.retention_months)


def verified(sealed: Sealed) -> Report:
    """``audit verify`` against the database."""
    verdict = sealed.verdict
    if not verdict.ok:
        return Report(False, [f"audit verify: FAILED after {verdict.rows} good rows: {verdict.problem}"])
    if sealed.sealing_failed:
        return Report(False, [f"audit verify: FAILED: new rows could not be sealed: {sealed.sealing_failed}"])
    since = f" from the checkpoint of {verdict.since}" if verdict.since else ""
    lines = [
        f"audit verify: ok: {verdict.rows} rows chained{since}, head hash {verdict.head_hash} "
        f"(chain entry {verdict.head_seq}; {verdict.checkpoints} checkpoints verified)"
    ]
    if verdict.pending:
        lines.append(f"audit verify: {verdict.pending} newer rows wait for open transactions to end before sealing")
    return Report(True, lines)


def offline(verdict: ExportVerdict, directory: Path) -> Report:
    """``audit verify --export``."""
    if not verdict.ok:
        return Report(False, [f"audit verify: FAILED: export {directory} ({verdict.month}): {verdict.problem}"])
    return Report(True, [
        f"audit verify: ok: export {directory}: {verdict.month}, {verdict.events} events, head hash "
        f"{verdict.head_hash}, checkpoint signed by audit key {verdict.kid}"
    ])  # fmt: skip


def exported(result: tuple[ExportSummary, ExportVerdict]) -> Report:
    """``audit export``: what was written, once it was read back whole."""
    summary, verdict = result
    if not verdict.ok:
        return offline(verdict, summary.directory)
    return Report(True, [
        f"audit export: {summary.month}: {summary.events} events to {summary.directory} "
        f"({summary.size / 1e6:.1f} MB), checkpoint head {summary.head_hash}, read back and verified"
    ])  # fmt: skip


def pruned(months: list[Pruned], cut: date) -> Report:
    """``audit prune``."""
    if not months:
        return Report(True, [f"audit prune: no kept month ends by {month_label(cut)}"])
    return Report(True, [
        f"audit prune: dropped {m.month} ({m.events} events; exported to {m.location})" for m in months
    ])  # fmt: skip


def break_glass(events: list[StoredAuditEvent], start: datetime, *, as_json: bool) -> Report:
    """``audit break-glass``: one line per disclosure (a table, or JSON lines), then how many on stderr."""
    if as_json:
        lines = [msgspec.json.encode(event).decode() for event in events]
    else:
        lines = [
            f"{event.recorded.isoformat()}  {event.event_id}  client {event.client_id} ({event.client_service})  "
            f"practitioner {event.practitioner or '-'}  purpose {event.purpose_of_use}  "
            f"patients {' '.join(event.patients)}  {event.method} {event.path}  HTTP {event.status}"
            for event in events
        ]
    return Report(True, lines, [f"{len(events)} break-glass disclosures since {start.isoformat()}"])
