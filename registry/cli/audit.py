"""``audit``: the audit trail's hash chain, sealed and verified; break-glass disclosures for review."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session

if TYPE_CHECKING:
    from registry.audit.chain import Verdict
    from schemas.audit import StoredAuditEvent

__all__ = ("audit",)


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain."""


@audit.command("verify")
@click.pass_obj
def audit_verify(runtime: Runtime) -> None:
    """Seal pending audit rows, then check every row against the hash chain; exit 1 naming the first bad row."""
    import asyncpg

    from registry.audit.chain import ChainBroken, seal, verify
    from registry.audit.repository import AuditRepository

    sealing_failed: list[str] = []

    async def run(session: Session) -> Verdict:
        repository = AuditRepository(session.queries)
        async with session.database.writer() as conn:
            try:
                while (result := await seal(conn, repository, wait=True)).more and result.sealed:
                    pass  # more than one run's worth; rows that wait for open transactions stay pending
            except (ChainBroken, asyncpg.PostgresError) as exc:
                sealing_failed.append(str(exc))
            return await verify(conn, repository)

    verdict = runtime.run(runtime.settings(), run, at_head=True)
    if not verdict.ok:
        click.echo(f"audit verify: FAILED after {verdict.rows} good rows: {verdict.problem}", err=True)
        sys.exit(1)
    if sealing_failed:
        click.echo(f"audit verify: FAILED: new rows could not be sealed: {sealing_failed[0]}", err=True)
        sys.exit(1)
    click.echo(f"audit verify: ok: {verdict.rows} rows chained, head hash {verdict.head_hash}")
    if verdict.pending:
        click.echo(f"audit verify: {verdict.pending} newer rows wait for open transactions to end before sealing")


@audit.command("break-glass")
@click.option(
    "--since", required=True, help="From when (ISO date or date-time, UTC unless it says otherwise), e.g. 2026-01-01."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def audit_break_glass(runtime: Runtime, since: str, as_json: bool) -> None:
    """Every disclosure made by break-glass since a date, oldest first, for the privacy officer's review."""
    import msgspec

    from registry.audit.repository import AuditRepository

    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise click.ClickException(f"--since {since!r} is not an ISO date or date-time") from None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)

    async def run(session: Session) -> list[StoredAuditEvent]:
        async with session.database.reader() as conn:
            return await AuditRepository(session.queries).break_glass(conn, start)

    events = runtime.run(runtime.settings(), run, at_head=True)
    for event in events:
        if as_json:
            click.echo(msgspec.json.encode(event).decode())
            continue
        click.echo(
            f"{event.recorded.isoformat()}  {event.event_id}  client {event.client_id} ({event.client_service})  "
            f"practitioner {event.practitioner or '-'}  purpose {event.purpose_of_use}  "
            f"patients {' '.join(event.patients)}  {event.method} {event.path}  HTTP {event.status}"
        )
    click.echo(f"{len(events)} break-glass disclosures since {start.isoformat()}", err=True)
