"""``services``: the services directory, the gateways and registries records may name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import msgspec

from registry.cli.output import echo_table
from registry.cli.runtime import Runtime

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
@click.option("--bearer-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a fixed bearer token that service takes from this instance.")  # fmt: skip
@click.option("--token-endpoint", default=None,
              help="Where to get tokens for --client-id when not on the service's own origin.")  # fmt: skip
@click.pass_obj
def services_add(
    runtime: Runtime,
    service_id: str,
    kind: str,
    name: str,
    base_url: str,
    style: str,
    client_id: str | None,
    bearer_token_file: str | None,
    token_endpoint: str | None,
) -> None:
    """Add a member service (or change and re-enable an existing one)."""
    token_file = str(Path(bearer_token_file).resolve()) if bearer_token_file else None
    service, created = _with_directory(
        runtime,
        lambda d: d.add(
            service_id=service_id, kind=kind, name=name, base_url=base_url, search_style=style, client_id=client_id,
            bearer_token_file=token_file, token_endpoint=token_endpoint,
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
