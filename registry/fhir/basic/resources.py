"""Registry records as FHIR ``Basic`` (RegistryRecord): the FHIR rules over ``RecordService``.

The records rules (validation, idempotency, history) are ``RecordService``'s; this module adds what
FHIR says about ids, versions and conditional updates, and shapes the answers. No HTTP here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry import errors
from registry.fhirapi.search import PATIENT_PARAMETERS, Criteria, SearchQuery, any_text, code_token, service_token
from registry.records.lifecycle import ROUTING_STATUSES
from schemas.fhir.bundle import searchset
from schemas.fhir.outcome import withheld_entry
from schemas.fhir.record import read_registry_record, registry_record
from schemas.types import RecordStatus

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from registry.auth.scopes import Principal
    from registry.records.repository import StoredRecord
    from registry.records.service import RecordService
    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.record import RecordClaim

__all__ = ("RecordResources", "Written")


@dataclass(frozen=True, slots=True)
class Written:
    """The answer to a write: the resource as stored and whether the write created it."""

    resource: dict[str, Any]
    record: StoredRecord
    created: bool


class RecordResources:
    """Read, search and write registry records as RegistryRecord resources."""

    def __init__(self, records: RecordService, canon: Canonicals) -> None:
        self._records = records
        self._canon = canon
        self._status = code_token({str(s): str(s) for s in RecordStatus}, canon.code_system("registry-record-status"))
        self._service = service_token(canon.service_id_system)

    def parse(self, body: bytes) -> RecordClaim:
        """A RegistryRecord body as the record it asks for (see ``schemas.fhir.record``)."""
        return read_registry_record(body, self._canon)

    def resource(self, stored: StoredRecord) -> dict[str, Any]:
        """A stored record as a RegistryRecord."""
        return registry_record(
            self._canon,
            record_id=str(stored.record_id),
            ihi=stored.ihi,
            service_id=stored.service_id,
            status=stored.status,
            type_=stored.type,
            version=stored.version,
            last_updated=stored.last_updated,
            labels=stored.security_labels,
        )

    async def read(self, record_id: str, *, requester: Requester | None = None, primary: bool = False) -> StoredRecord:
        """One record by its resource id (from the primary when a write follows); with ``requester``, a
        disclosure decided as such.

        Raises:
            NotFound: no record has this id.
            Forbidden: the record is withheld from ``requester``.
        """
        try:
            key = uuid.UUID(record_id)
        except ValueError:
            raise errors.NotFound("no such record") from None
        return await self._records.by_id(key, requester=requester, primary=primary)

    async def search(self, query: SearchQuery, base: str, *, requester: Requester) -> dict[str, Any]:
        """A searchset Bundle of the records the query selects (active ones unless ``status`` says) that
        may be disclosed to ``requester``, with a ``suppressed`` outcome entry when any were withheld.

        Raises:
            MalformedRequest: the search names neither a patient, a service nor an id.
            Forbidden: it lists another service's patients without naming one (``enumeration``).
        """
        ihis = query.any_of(PATIENT_PARAMETERS)
        services = query.any_of({"service": self._service})
        ids = query.any_of({"_id": any_text})
        statuses = query.any_of({"status": self._status})
        if ihis is None and services is None and ids is None:
            message = (
                "a Basic search names a patient (subject:identifier, patient.identifier, patient), a service or an _id"
            )
            raise errors.MalformedRequest(message)
        record_ids = None if ids is None else sorted({key for key in map(_uuid_or_none, ids) if key is not None})
        wanted = statuses if statuses is not None else {str(s) for s in ROUTING_STATUSES}
        stored: list[StoredRecord] = []
        total, withheld = 0, False
        if not (ihis == set() or services == set() or record_ids == [] or not wanted):  # else nothing can match
            stored, total, withheld = await self._records.search(
                ihis=_sorted(ihis),
                service_ids=_sorted(services),
                record_ids=record_ids,
                statuses=sorted(wanted),
                limit=query.count,
                offset=query.offset,
                requester=requester,
            )
        resources = [self.resource(s) for s in stored]
        outcome = [withheld_entry(self._canon)] if withheld else []
        return searchset(base, resources, total=total, links=query.links(f"{base}/Basic", total), outcomes=outcome)

    async def create(self, claim: RecordClaim, *, actor: Principal) -> Written:
        """``POST``: create the record, or (as the native PUT) update or leave unchanged the one with its key."""
        return await self._write(claim, None, actor=actor)

    async def update(
        self, record_id: str, claim: RecordClaim, expected_version: int | None, *, actor: Principal
    ) -> Written:
        """``PUT Basic/{id}``: change an existing record's status or type (its key cannot change).

        Raises:
            MalformedRequest: the body has no id, or another id than the URL.
            MethodNotAllowed: no record has this id (ids are assigned by the server).
            InvalidInput: the body names another IHI or service than the record has.
            PreconditionFailed: ``expected_version`` (If-Match) is not the stored version.
        """
        if claim.id != record_id:
            message = "the resource's id must equal the id in the URL" if claim.id else "the resource has no id"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, "Basic.id")])
        try:
            current = await self.read(record_id, primary=True)
        except errors.NotFound:
            message = "no record has this id; records are created by POST or by conditional update"
            raise errors.MethodNotAllowed(message) from None
        moved: list[errors.Issue] = []
        if claim.ihi != current.ihi:
            moved.append(errors.Issue("a record's patient (IHI) cannot change", claim.ihi_expression))
        if claim.service_id != current.service_id:
            moved.append(errors.Issue("a record's service cannot change", claim.service_expression))
        if moved:
            raise errors.InvalidInput("a record cannot move to another patient or service", issues=moved)
        return await self._write(claim, expected_version, actor=actor)

    async def conditional_update(
        self, criteria: Criteria, claim: RecordClaim, expected_version: int | None, *, actor: Principal
    ) -> Written:
        """``PUT Basic?<patient>&service=``: create or update the record with that natural key.

        Raises:
            PreconditionFailed: the criteria do not name exactly one patient and one service.
            InvalidInput: the body names another record than the criteria, or another id.
        """
        ihis = criteria.any_of(PATIENT_PARAMETERS)
        services = criteria.any_of({"service": self._service})
        if not ihis or not services or len(ihis) != 1 or len(services) != 1:
            raise errors.PreconditionFailed(
                "a conditional update names exactly one record: one patient (subject:identifier, "
                "patient.identifier or patient) and one service"
            )
        issues: list[errors.Issue] = []
        if claim.ihi not in ihis:
            issues.append(errors.Issue("the resource names another patient than the criteria", claim.ihi_expression))
        if claim.service_id not in services:
            issues.append(
                errors.Issue("the resource names another service than the criteria", claim.service_expression)
            )
        if not issues and claim.id is not None:
            existing = await self._records.by_key(claim.ihi, claim.service_id)
            if existing is None or str(existing.record_id) != claim.id:
                issues.append(
                    errors.Issue("the resource's id is not the id of the record the criteria select", "Basic.id")
                )
        if issues:
            raise errors.InvalidInput("the resource does not match the conditional update", issues=issues)
        return await self._write(claim, expected_version, actor=actor)

    async def _write(self, claim: RecordClaim, expected_version: int | None, *, actor: Principal) -> Written:
        """Every FHIR write ends here, through the records service, which refuses (403) a record of
        another service than the caller's own unless the caller holds ``admin``."""
        stored, outcome = await self._records.put(
            claim.ihi,
            claim.service_id,
            claim.status,
            claim.type,
            actor=actor,
            expected_version=expected_version,
            labels=claim.labels,
        )
        return Written(resource=self.resource(stored), record=stored, created=outcome == "created")


def _sorted(values: set[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


def _uuid_or_none(text: str) -> uuid.UUID | None:
    """A resource id as a record id; ids that are not UUIDs name no record."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
