"""``audit``: the audit trail's hash chain, sealed and verified."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session

if TYPE_CHECKING:
    from registry.audit.chain import Verdict

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
