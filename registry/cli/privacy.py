"""``consent``: the operator's shortcuts for a patient's privacy Consents (``opt-out``, ``opt-in``, ``show``).

Each change goes through the same service as ``/fhir/Consent`` (history, the patient's compact
policy, the change signal and the ``patient-consent`` topic) and leaves an audit row of its own,
by the ``operator`` client, in the write's transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session

if TYPE_CHECKING:
    from registry.privacy.consents import ConsentService
    from registry.privacy.repository import StoredConsent
    from schemas.audit import AuditEntry
    from schemas.privacy import PatientPolicy

__all__ = ("consent",)


def _service(session: Session) -> ConsentService:
    from registry.audit.repository import AuditRepository
    from registry.audit.trail import AuditTrail
    from registry.privacy.consents import ConsentService
    from registry.privacy.repository import ConsentRepository

    trail = AuditTrail(AuditRepository(session.queries), session.settings.audit, observer=session.service_id)
    return ConsentService(session.database, ConsentRepository(session.queries), trail)


def _operator_row(session: Session, command: str, ihi: str, interaction: str) -> AuditEntry:
    from schemas.audit import AuditEntry

    return AuditEntry(
        recorded=datetime.now(UTC), request_id=f"cli-{uuid.uuid4().hex}", peer_request_id=None,
        interaction=interaction, action="C" if interaction == "create" else "U", outcome=0, status=200, detail=None,
        method="CLI", path=f"ief-registry consent {command}", query="", client_id="operator",
        client_service=session.service_id, client_address=None, token_id=None, observer=session.service_id,
        patients=(ihi,),
    )  # fmt: skip


def _ihi(value: str) -> str:
    from schemas.types import InvalidValueError, parse_ihi

    try:
        return parse_ihi(value)
    except InvalidValueError as exc:
        raise click.ClickException(f"invalid IHI: {exc}") from None


@click.group()
def consent() -> None:
    """A patient's privacy Consents: record an opt-out, withdraw it, show what is in force."""


@consent.command("opt-out")
@click.argument("ihi")
@click.option("--reason", default=None, help="Why (kept in the Consent's policyRule text).")
@click.pass_obj
def consent_opt_out(runtime: Runtime, ihi: str, reason: str | None) -> None:
    """Record that a patient opts out: nothing of theirs is disclosed or notified (registrations are kept)."""
    patient = _ihi(ihi)

    async def run(session: Session) -> StoredConsent:
        return await _service(session).opt_out(
            patient, reason=reason, actor="operator", operator=_operator_row(session, "opt-out", patient, "create")
        )

    stored = runtime.run(runtime.settings(), run, migrate=True)
    click.echo(f"opted out: Consent/{stored.consent_id} (active, deny)")


@consent.command("opt-in")
@click.argument("ihi")
@click.pass_obj
def consent_opt_in(runtime: Runtime, ihi: str) -> None:
    """Withdraw a patient's opt-out (its Consent becomes inactive): routing is restored at once."""
    patient = _ihi(ihi)

    async def run(session: Session) -> list[StoredConsent]:
        return await _service(session).opt_in(
            patient, actor="operator", operator=_operator_row(session, "opt-in", patient, "update")
        )

    withdrawn = runtime.run(runtime.settings(), run, migrate=True)
    if not withdrawn:
        click.echo("no active opt-out: nothing withdrawn")
    for stored in withdrawn:
        click.echo(f"withdrawn: Consent/{stored.consent_id} (inactive)")


@consent.command("show")
@click.argument("ihi")
@click.pass_obj
def consent_show(runtime: Runtime, ihi: str) -> None:
    """Every Consent of a patient (newest last) and whether an opt-out is in force."""
    from registry.privacy.consents import is_opt_out

    patient = _ihi(ihi)

    async def run(session: Session) -> tuple[list[StoredConsent], PatientPolicy]:
        return await _service(session).of_patient(patient)

    found, policy = runtime.run(runtime.settings(), run, migrate=True)
    for stored in found:
        provision = stored.resource.get("provision") or {}
        nested = len(provision.get("provision") or [])
        kind = "opt-out" if is_opt_out(stored) else f"base {provision.get('type', 'permit')}, {nested} provisions"
        click.echo(
            f"Consent/{stored.consent_id}  {stored.status:16}  v{stored.version}  "
            f"{stored.last_updated.isoformat()}  {kind}"
        )
    opted_out = any(is_opt_out(stored) for stored in found)
    click.echo(f"{len(found)} Consents, {len(policy)} in force; opt-out {'in force' if opted_out else 'not in force'}")
