"""Who may call, and as what: ``token`` (the operator's own), ``keys`` (this instance's signing keys) and
``clients`` (register, list, rotate, disable, enable; full-resource subscriptions)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from registry import errors
from registry.cli.output import echo_table
from registry.cli.runtime import Runtime, Session
from registry.cli.serving import mint

if TYPE_CHECKING:
    from registry.auth.repository import ClientRow

__all__ = ("clients", "keys", "token")


@click.command()
@click.option("--scopes", required=True, help='Space-separated scopes, e.g. "admin" or "system/Basic.rs".')
@click.option("--service-id", default=None, help="Service the token is bound to (default: this instance's).")
@click.option(
    "--lifetime", type=int, default=None, help="Seconds the token is valid (default IEF_AUTH_TOKEN_LIFETIME)."
)
@click.pass_obj
def token(runtime: Runtime, scopes: str, service_id: str | None, lifetime: int | None) -> None:
    """Print a token from the built-in issuer for the local operator (alone on stdout)."""
    from registry.auth.clients import check_bound_service
    from registry.auth.scopes import is_scope

    settings = runtime.settings()
    wanted = scopes.split()
    unknown = [scope for scope in wanted if not is_scope(scope)]
    if not wanted or unknown:
        raise click.ClickException(f"unknown scope(s): {' '.join(unknown) or '(none given)'}")
    if lifetime is not None and not 10 <= lifetime <= settings.auth.max_token_lifetime:
        raise click.ClickException(f"--lifetime is 10 to {settings.auth.max_token_lifetime} seconds")
    try:
        bound = check_bound_service(service_id) if service_id else None
    except errors.InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    issued = runtime.run(
        settings,
        lambda session: mint(session, wanted, lifetime, bound),
        migrate=True,
        auth=True,
    )
    click.echo(issued)


@click.group()
def keys() -> None:
    """This instance's signing keys (kept in the database)."""


@keys.command("rotate")
@click.option("--outbound", is_flag=True, help="Rotate the outbound key (client assertions to peers) instead.")
@click.option("--requester", is_flag=True, help="Rotate the key that signs IEF-Requester assertions instead.")
@click.option("--audit", "audit_key", is_flag=True, help="Rotate the audit key (signs checkpoints) instead.")
@click.pass_obj
def keys_rotate(runtime: Runtime, outbound: bool, requester: bool, audit_key: bool) -> None:
    """Make a new active signing key; the old one stays published until its tokens have expired."""
    from registry.auth.keys import AUDIT, ISSUER, OUTBOUND, REQUESTER

    chosen = [purpose for purpose, flag in ((OUTBOUND, outbound), (REQUESTER, requester), (AUDIT, audit_key)) if flag]
    if len(chosen) > 1:
        raise click.ClickException("rotate one key at a time: --outbound, --requester or --audit")
    purpose = chosen[0] if chosen else ISSUER
    kid = runtime.run(runtime.settings(), lambda session: session.auth.keys.rotate(purpose), migrate=True, auth=True)
    click.echo(f"new active {purpose} key {kid}")


@click.group()
def clients() -> None:
    """Clients: who may get tokens, bound to which service, with which scopes and keys."""


def _key_material(jwks: str | None, jwks_url: str | None, public_key: str | None) -> dict[str, Any]:
    material: dict[str, Any] = {}
    try:
        if jwks:
            material["jwks"] = msgspec.json.decode(Path(jwks).read_bytes())
        if public_key:
            material["public_key_pem"] = Path(public_key).read_text(encoding="utf-8")
    except (OSError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the key material: {exc}") from None
    if jwks_url:
        material["jwks_url"] = jwks_url
    return material


_clearance_option = click.option(
    "--clearance",
    default=None,
    help='Security labels it is cleared for, space-separated, e.g. "PSY HIV" (R, V and sensitivity codes).',
)
_break_glass_option = click.option(
    "--break-glass/--no-break-glass",
    default=None,
    help="Whether purpose ETREAT from it overrides a patient's restrictions (audited and reported).",
)
_purpose_option = click.option(
    "--purpose", default=None, help='Purposes of use it may state, space-separated, e.g. "TREAT ETREAT" (default any).'
)

_jwks_option = click.option("--jwks", type=click.Path(dir_okay=False), help="File holding the client's JWKS.")
_jwks_url_option = click.option("--jwks-url", help="URL of the client's JWKS (https; http on loopback or in dev).")
_public_key_option = click.option(
    "--public-key", type=click.Path(dir_okay=False), help="File holding its PEM public key."
)


@clients.command("add")
@click.argument("name")
@click.option("--service-id", required=True, help="The service this client is bound to (its writes name it).")
@click.option(
    "--scopes", required=True, help='Space-separated scopes it may hold, e.g. "system/Basic.cu system/Basic.rs".'
)
@_jwks_option
@_jwks_url_option
@_public_key_option
@click.option("--secret", is_flag=True, help="Authenticate with a generated client secret (dev, or when allowed).")
@click.option("--external", is_flag=True, help="No credentials here: a trusted issuer's client maps to it.")
@click.option(
    "--rate", type=float, default=None, help="Requests per second for this client (default IEF_AUTH_RATE_PER_SECOND)."
)
@click.option("--full-resource", is_flag=True, help="Allow it subscriptions with full-resource payloads.")
@_clearance_option
@_break_glass_option
@_purpose_option
@click.pass_obj
def clients_add(
    runtime: Runtime,
    name: str,
    service_id: str,
    scopes: str,
    jwks: str | None,
    jwks_url: str | None,
    public_key: str | None,
    secret: bool,
    external: bool,
    rate: float | None,
    full_resource: bool,
    clearance: str | None,
    break_glass: bool | None,
    purpose: str | None,
) -> None:
    """Register a client; prints its ID alone on the last line (and a secret once, before it)."""
    settings = runtime.settings()
    material = _key_material(jwks, jwks_url, public_key)

    async def add(session: Session) -> tuple[ClientRow, str | None]:
        added = await session.auth.clients.add(
            name=name,
            service_id=service_id,
            scopes=scopes.split(),
            secret=secret,
            external=external,
            rate_per_second=rate,
            clearances=(clearance or "").split(),
            break_glass=bool(break_glass),
            purposes=(purpose or "").split(),
            **material,
        )
        if full_resource:
            await _allow_full_resource(session, added[0].client_id, allowed=True)
        return added

    row, plain = runtime.run(settings, add, migrate=True, auth=True)
    if plain is not None:
        click.echo(f"client secret (shown once, store it now): {plain}")
        if not (settings.auth.allow_client_secrets or settings.dev):
            click.echo("note: client secrets are refused until IEF_AUTH_ALLOW_CLIENT_SECRETS=true or --dev", err=True)
    click.echo(f"added client {row.name} bound to {row.service_id}: {' '.join(row.scopes)}", err=True)
    click.echo(row.client_id)


async def _allow_full_resource(session: Session, client_id: str, *, allowed: bool) -> None:
    from broker.subscriptions.repository import SubscriptionRepository

    async with session.database.writer() as conn:
        if not await SubscriptionRepository(session.queries).set_full_resource(conn, client_id, allowed):
            raise click.ClickException(f"no client {client_id}")


@clients.command("full-resource")
@click.argument("client_id")
@click.option("--off", is_flag=True, help="Stop allowing it (its full-resource subscriptions go to error).")
@click.pass_obj
def clients_full_resource(runtime: Runtime, client_id: str, off: bool) -> None:
    """Allow a client subscriptions with full-resource payloads (or stop, with --off)."""
    runtime.run(runtime.settings(), lambda session: _allow_full_resource(session, client_id, allowed=not off))
    click.echo(f"{'not allowed' if off else 'allowed'} full-resource payloads: {client_id}")


@clients.command("update")
@click.argument("client_id")
@_clearance_option
@_break_glass_option
@_purpose_option
@click.pass_obj
def clients_update(
    runtime: Runtime, client_id: str, clearance: str | None, break_glass: bool | None, purpose: str | None
) -> None:
    """Change what a client is cleared for, whether it may break the glass, and the purposes it may state."""
    row = runtime.run(
        runtime.settings(),
        lambda session: session.auth.clients.update_privacy(
            client_id,
            clearances=None if clearance is None else clearance.split(),
            break_glass=break_glass,
            purposes=None if purpose is None else purpose.split(),
        ),
        migrate=True,
        auth=True,
    )
    click.echo(
        f"updated {row.client_id}: clearances {' '.join(row.clearances) or '(none)'}, "
        f"break-glass {'yes' if row.break_glass else 'no'}, purposes {' '.join(row.purposes) or '(any)'}"
    )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def clients_list(runtime: Runtime, as_json: bool) -> None:
    """List clients, never their secrets (a table with a header line, or JSON lines)."""
    from registry.auth.clients import client_info

    found = runtime.run(runtime.settings(), lambda session: session.auth.clients.list_all(), migrate=True, auth=True)
    if as_json:
        for row in found:
            click.echo(msgspec.json.encode(client_info(row)).decode())
        return
    echo_table(
        ("CLIENT ID", "STATUS", "AUTHENTICATION", "SERVICE ID", "NAME", "SCOPES"),
        ((row.client_id, row.status, row.auth_method, row.service_id, row.name, " ".join(row.scopes)) for row in found),
    )


@clients.command("rotate")
@click.argument("client_id")
@_jwks_option
@_jwks_url_option
@_public_key_option
@click.pass_obj
def clients_rotate(
    runtime: Runtime, client_id: str, jwks: str | None, jwks_url: str | None, public_key: str | None
) -> None:
    """Replace a client's credentials: new key material when given, else a new secret."""
    material = _key_material(jwks, jwks_url, public_key)
    row, plain = runtime.run(
        runtime.settings(), lambda session: session.auth.clients.rotate(client_id, **material), migrate=True, auth=True
    )
    if plain is not None:
        click.echo(f"client secret (shown once, store it now): {plain}")
    click.echo(f"rotated {row.client_id} ({row.auth_method})")


def _set_client_status(runtime: Runtime, client_id: str, status: str) -> None:
    from schemas.types import ServiceStatus

    wanted = ServiceStatus(status)
    row = runtime.run(
        runtime.settings(), lambda session: session.auth.clients.set_status(client_id, wanted), migrate=True, auth=True
    )
    click.echo(f"{status} {row.client_id} {row.name}")


@clients.command("disable")
@click.argument("client_id")
@click.pass_obj
def clients_disable(runtime: Runtime, client_id: str) -> None:
    """Disable a client: its tokens are refused (within IEF_AUTH_CLIENT_CACHE_SECONDS) and it gets no new ones."""
    _set_client_status(runtime, client_id, "disabled")


@clients.command("enable")
@click.argument("client_id")
@click.pass_obj
def clients_enable(runtime: Runtime, client_id: str) -> None:
    """Enable a disabled client again."""
    _set_client_status(runtime, client_id, "enabled")
