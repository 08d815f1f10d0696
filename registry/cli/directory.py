"""``services``: the services directory, the gateways and registries records may name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import msgspec

from registry.cli.output import echo_table
from registry.cli.progress import run_job
from registry.cli.runtime import Runtime
from schemas.services import Organisation
from schemas.types import Jurisdiction

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from registry.directory.service import DirectoryService

__all__ = ("services",)

T = TypeVar("T")


@click.group()
def services() -> None:
    """The services directory: gateways and registries that records may name."""


def _with_directory(runtime: Runtime, action: Callable[[DirectoryService], Awaitable[T]]) -> T:
    """Run ``action`` on the services directory (the database migrated first)."""
    return runtime.run(runtime.settings(), lambda session: action(session.directory()), migrate=True)


@services.command("add")
@click.option("--id", "service_id", required=True, help="Service ID (UUID or ULID).")
@click.option(
    "--kind",
    type=click.Choice(["gateway", "registry"]),
    required=True,
    help="gateway: holds imaging and answers FHIR searches; registry: a peer registry that records refer to.",
)
@click.option("--name", required=True, help="Display name.")
@click.option(
    "--base-url", required=True, help="A gateway's FHIR base URL; a registry's root (its API and /fhir hang off it)."
)
@click.option("--style", type=click.Choice(["ief", "harmony"]), default="ief", show_default=True,
              help="How the broker phrases patient searches to this gateway.")  # fmt: skip
@click.option("--client-id", default=None, help="The client ID that service gave this instance (private_key_jwt).")
@click.option("--token-endpoint", default=None,
              help="With --client-id: where to get tokens for that service when not on its own origin.")  # fmt: skip
@click.option("--bearer-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a fixed bearer token that service takes from this instance.")  # fmt: skip
@click.option("--hpio", default=None, help="The organisation's HPI-O (16 digits, 800362…).")
@click.option("--jurisdiction", type=click.Choice([str(j) for j in Jurisdiction]), default=None,
              help="Where the organisation is: a state or territory, or national.")  # fmt: skip
@click.option("--contact-email", default=None, help="Who to write to about this service.")
@click.option("--contact-phone", default=None, help="Who to call about this service.")
@click.option("--capability-statement-url", default=None, help="Where the service's FHIR CapabilityStatement is.")
@click.option("--fallback", default=None, help='How to get imaging while it is not on FHIR ("phone the practice").')
@click.pass_obj
def services_add(
    runtime: Runtime,
    /,
    service_id: str,
    kind: str,
    name: str,
    base_url: str,
    style: str,
    client_id: str | None,
    token_endpoint: str | None,
    bearer_token_file: str | None,
    **organisation: str | None,
) -> None:
    """Add a member service (or change and re-enable an existing one)."""
    token_file = str(Path(bearer_token_file).resolve()) if bearer_token_file else None
    jurisdiction = organisation.pop("jurisdiction")
    described = Organisation(jurisdiction=Jurisdiction(jurisdiction) if jurisdiction else None, **organisation)
    service, created = _with_directory(
        runtime,
        lambda d: d.add(
            service_id=service_id, kind=kind, name=name, base_url=base_url, search_style=style, client_id=client_id,
            bearer_token_file=token_file, token_endpoint=token_endpoint, organisation=described,
        ),
    )  # fmt: skip
    click.echo(f"{'added' if created else 'updated'} {service.kind} {service.service_id} {service.name}")


@services.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def services_list(runtime: Runtime, as_json: bool) -> None:
    """List member services (a table with a header line, or JSON lines)."""
    found = _with_directory(runtime, lambda d: d.list_all())
    if as_json:
        for service in found:
            click.echo(msgspec.json.encode(service).decode())
        return
    echo_table(
        ("SERVICE ID", "KIND", "STATUS", "STYLE", "NAME", "BASE URL", "CREDENTIALS"),
        (
            (
                service.service_id, service.kind, service.status, service.search_style, service.name,
                service.base_url, _credential(service.client_id, service.bearer_token_file),
            )
            for service in found
        ),
    )  # fmt: skip


def _credential(client_id: str | None, bearer_token_file: str | None) -> str:
    if client_id:
        return f"client {client_id}"
    return "token file" if bearer_token_file else "none"


@services.command("disable")
@click.argument("service_id")
@click.pass_obj
def services_disable(runtime: Runtime, service_id: str) -> None:
    """Disable a member service: records can no longer name it."""
    from schemas.types import ServiceStatus

    service = _with_directory(runtime, lambda d: d.set_status(service_id, ServiceStatus.DISABLED))
    click.echo(f"disabled {service.service_id} {service.name}")


@services.command("enable")
@click.argument("service_id")
@click.pass_obj
def services_enable(runtime: Runtime, service_id: str) -> None:
    """Enable a disabled member service again."""
    from schemas.types import ServiceStatus

    service = _with_directory(runtime, lambda d: d.set_status(service_id, ServiceStatus.ENABLED))
    click.echo(f"enabled {service.service_id} {service.name}")


@services.command("retire")
@click.argument("service_id")
@click.option("--reason", default="decommissioned", show_default=True, help="Why (recorded on every archived record).")
@click.pass_obj
def services_retire(runtime: Runtime, service_id: str, reason: str) -> None:
    """Retire a service (practice closed): archive every active record of it as the operator's decision; the
    service is no longer routed or written to. Resumable: run it again after an interruption."""
    run_job(runtime, f"services retire {service_id}", "archived",
         lambda jobs, progress, chunk: jobs.retire(service_id, reason, progress, chunk=chunk))  # fmt: skip


@services.command("move")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def services_move(runtime: Runtime, old: str, new: str) -> None:
    """Re-point every record of OLD to NEW (a practice changes gateway vendor), keeping history; OLD is disabled.
    Resumable: run it again after an interruption."""
    run_job(runtime, f"services move {old} {new}", "moved or archived",
         lambda jobs, progress, chunk: jobs.move(old, new, progress, chunk=chunk))  # fmt: skip
