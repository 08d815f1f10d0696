"""Consent rules: record, change and find a patient's Consents (DESIGN §12). No HTTP, no FHIR dicts
beyond the resource kept as written.

Every write commits its request's audit row in its own transaction; the database trigger keeps
the Consent's history, recomputes the patient's compact policy (what the decision point reads) and
announces the change (``signal.py``, the ``patient-consent`` topic) when the transaction commits.
The operator's command line records opt-outs and opt-ins through the same writes, with an audit
row of its own (``operator``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from registry import errors
from registry.audit.context import note_patients
from registry.checks import check_ihi
from schemas.fhir.consent import ConsentClaim, compile_consent, opt_out_consent

if TYPE_CHECKING:
    from registry.audit.trail import AuditTrail
    from registry.db.pool import Database
    from registry.privacy.repository import ConsentRepository, StoredConsent
    from schemas.audit import AuditEntry
    from schemas.privacy import ConsentRules, PatientPolicy

__all__ = ("ConsentService", "is_opt_out")


def is_opt_out(consent: StoredConsent) -> bool:
    """Whether an active Consent is a plain opt-out (base ``deny``, no criteria, no exceptions)."""
    provision = consent.resource.get("provision") or {}
    plain = not any(provision.get(name) for name in ("actor", "purpose", "securityLabel", "provision", "period"))
    return consent.status == "active" and provision.get("type") == "deny" and plain


class ConsentService:
    """Everything the FHIR ``Consent`` resource and the ``consent`` commands do with Consents."""

    def __init__(self, db: Database, repository: ConsentRepository, audit: AuditTrail) -> None:
        self._db = db
        self._repo = repository
        self._audit = audit

    async def create(self, claim: ConsentClaim, *, actor: str, operator: AuditEntry | None = None) -> StoredConsent:
        """Record a new Consent (its id assigned here); ``operator`` is the audit row of a command-line write.

        Raises:
            InvalidInput: the patient's IHI is not valid.
        """
        check_ihi(claim.ihi, "Consent.patient.identifier.value")
        consent_id = uuid.uuid4()
        rules = _rules(claim, consent_id)
        note_patients([claim.ihi])
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            stored = await self._repo.insert(
                conn, consent_id=consent_id, ihi=claim.ihi, status=claim.status, resource=claim.resource,
                rules=rules, actor=actor,
            )  # fmt: skip
            audit.done(status=201, records=[], detail=f"Consent/{consent_id} created ({claim.status})")
            if operator is not None:
                await self._audit.insert_now(
                    conn, msgspec.structs.replace(operator, detail=f"Consent/{consent_id} created")
                )
        return stored

    async def update(
        self,
        consent_id: str,
        claim: ConsentClaim,
        *,
        actor: str,
        expected_version: int | None = None,
        operator: AuditEntry | None = None,
    ) -> StoredConsent:
        """Store a new version of a Consent (``inactive`` withdraws it).

        Raises:
            MalformedRequest: the body has another id than the URL.
            MethodNotAllowed: no Consent has this id (ids are assigned by the server).
            InvalidInput: the body names another patient than the Consent has.
            PreconditionFailed: ``expected_version`` (If-Match) is not the stored version.
        """
        if claim.id is not None and claim.id != consent_id:
            message = "the resource's id must equal the id in the URL"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, "Consent.id")])
        key = _uuid(consent_id)
        if key is None:
            raise errors.MethodNotAllowed("no Consent has this id; Consents are created by POST")
        note_patients([claim.ihi])
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            current = await self._repo.lock(conn, key)
            if current is None:
                raise errors.MethodNotAllowed("no Consent has this id; Consents are created by POST")
            if current.ihi != claim.ihi:
                message = "a Consent's patient cannot change"
                raise errors.InvalidInput(message, issues=[errors.Issue(message, "Consent.patient")])
            stored = await self._repo.update(
                conn, key, status=claim.status, resource=claim.resource, rules=_rules(claim, key), actor=actor,
                expected_version=expected_version,
            )  # fmt: skip
            if stored is None:
                raise errors.PreconditionFailed(
                    f"expected version {expected_version}, but the Consent is at version {current.version}",
                    code=errors.ErrorCode.VERSION_MISMATCH,
                )
            audit.done(status=200, detail=f"Consent/{consent_id} version {stored.version} ({claim.status})")
            if operator is not None:
                entry = msgspec.structs.replace(operator, detail=f"Consent/{consent_id} {claim.status}")
                await self._audit.insert_now(conn, entry)
        return stored

    async def read(self, consent_id: str) -> StoredConsent:
        """One Consent by id.

        Raises:
            NotFound: no such Consent.
        """
        key = _uuid(consent_id)
        async with self._db.reader() as conn:
            stored = await self._repo.get(conn, key) if key is not None else None
        if stored is None:
            raise errors.NotFound("no such Consent")
        note_patients([stored.ihi])
        return stored

    async def version(self, consent_id: str, version: int) -> StoredConsent:
        """One version of a Consent (FHIR vread).

        Raises:
            NotFound: no such Consent, or no such version of it.
        """
        key = _uuid(consent_id)
        async with self._db.reader() as conn:
            found = await self._repo.version(conn, key, version) if key is not None else None
            if found is None:
                exists = key is not None and await self._repo.get(conn, key) is not None
                raise errors.NotFound("no such version of the Consent" if exists else "no such Consent")
        note_patients([found.ihi])
        return found

    async def versions(
        self, consent_id: str, *, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[StoredConsent], int]:
        """A page of one Consent's versions, newest first, and their count (FHIR instance history).

        Raises:
            NotFound: no such Consent.
        """
        key = _uuid(consent_id)
        if key is None:
            raise errors.NotFound("no such Consent")
        async with self._db.reader() as conn:
            found, total = await self._repo.versions(conn, key, since=since, limit=limit, offset=offset)
            if not found and await self._repo.get(conn, key) is None:
                raise errors.NotFound("no such Consent")
        note_patients(dict.fromkeys(c.ihi for c in found))
        return found, total

    async def search(
        self, *, ihis: list[str] | None, statuses: list[str] | None, limit: int, offset: int, operator: bool
    ) -> tuple[list[StoredConsent], int]:
        """A page of Consents of the patients named (every patient only for the operator), and the total.

        Raises:
            Forbidden: no patient named, and the caller is not the operator (``enumeration``).
        """
        if ihis is None and not operator:
            raise errors.Forbidden(
                "a Consent search names a patient (patient.identifier or patient)", code=errors.ErrorCode.ENUMERATION
            )
        async with self._db.reader() as conn:
            found, total = await self._repo.search(conn, ihis=ihis, statuses=statuses, limit=limit, offset=offset)
        note_patients(dict.fromkeys(c.ihi for c in found))
        return found, total

    async def of_patient(self, ihi: str) -> tuple[list[StoredConsent], PatientPolicy]:
        """Every Consent of one patient, and the compact policy the active ones compile to."""
        ihi = check_ihi(ihi)
        async with self._db.reader() as conn:
            found, _ = await self._repo.search(conn, ihis=[ihi], statuses=None, limit=1000, offset=0)
            policy = await self._repo.policy(conn, ihi)
        return found, policy

    async def opt_out(self, ihi: str, *, reason: str | None, actor: str, operator: AuditEntry) -> StoredConsent:
        """Record a patient's opt-out (a Consent denying everything), unless one is already active."""
        found, _ = await self.of_patient(ihi)
        active = next((c for c in found if is_opt_out(c)), None)
        if active is not None:
            return active
        resource = opt_out_consent(check_ihi(ihi), when=datetime.now(UTC), reason=reason)
        claim = _claim(ihi, resource)
        return await self.create(claim, actor=actor, operator=operator)

    async def opt_in(self, ihi: str, *, actor: str, operator: AuditEntry) -> list[StoredConsent]:
        """Withdraw the patient's active opt-outs (each becomes ``inactive``); the withdrawn ones."""
        found, _ = await self.of_patient(ihi)
        withdrawn: list[StoredConsent] = []
        for consent in found:
            if is_opt_out(consent):
                resource = {**consent.resource, "status": "inactive"}
                claim = _claim(consent.ihi, resource)
                withdrawn.append(await self.update(str(consent.consent_id), claim, actor=actor, operator=operator))
        return withdrawn


def _rules(claim: ConsentClaim, consent_id: uuid.UUID) -> ConsentRules:
    """The claim's compiled rules, naming the Consent they came from."""
    return msgspec.structs.replace(claim.rules, consent_id=str(consent_id))


def _claim(ihi: str, resource: dict[str, Any]) -> ConsentClaim:
    return ConsentClaim(
        id=None, ihi=ihi, status=str(resource["status"]), resource=resource, rules=compile_consent(resource)
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
