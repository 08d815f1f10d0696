"""``federation``: this registry and the registries it federates with (``federation publish``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from registry.cli.progress import ProgressLine
from registry.cli.runtime import Runtime

if TYPE_CHECKING:
    from registry.cli.runtime import Session
    from registry.records.jobs import JobResult

__all__ = ("federation",)


@click.group()
def federation() -> None:
    """Federation with other registries."""


@federation.command("publish")
@click.option("--to", "target", required=True, help="The registry (its service ID here) to publish to.")
@click.pass_obj
def federation_publish(runtime: Runtime, target: str) -> None:
    """Keep, at the registry TARGET, a `registry` record naming this registry for every IHI with an active record
    here: from now on (through the publisher of `serve` or `ief-registry worker`), and for the IHIs there are
    already (a resumable backfill). TARGET admits this registry as a client bound to this registry's service ID
    with system/Basic.cu; here it is a registry service with credentials (`services add --client-id`)."""
    from federation.publisher import PublicationRepository
    from registry.checks import check_service_id
    from schemas.types import ServiceKind

    settings = runtime.settings()
    progress = ProgressLine(f"federation publish --to {target}", verb="queued")

    async def publish(session: Session) -> JobResult:
        sid = check_service_id(target, "to")
        service = await session.directory().get(sid)
        if service.kind is not ServiceKind.REGISTRY or not service.status.routes:
            raise click.ClickException(f"{sid} is not an enabled registry in the services directory")
        if not service.client_id and not service.bearer_token_file:
            raise click.ClickException(f"this registry has no credentials for {sid}: services add --client-id")
        await PublicationRepository(session.queries).add(session.database, sid)
        chunk = settings.records.lifecycle_chunk_size
        return await session.lifecycle().publish_backfill(sid, progress, chunk=chunk)

    result = runtime.run(settings, publish, migrate=True)
    click.echo(progress.summary(result.total, result.processed, result.changed, result.seconds))
