"""Registry records as FHIR ``Basic`` (RegistryRecord): the FHIR rules over ``RecordService``.

The records rules (validation, idempotency, history) are ``RecordService``'s; this module adds what
FHIR says about ids, versions and conditional updates, and shapes the answers. No HTTP here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from registry import errors
from registry.fhirapi.search import PATIENT_PARAMETERS, Criteria, SearchQuery, any_text, code_token, service_token
from registry.records.idempotency import Answer
from registry.records.lifecycle import ROUTING_STATUSES, WRITE_STATUS, shows_unrouted
from registry.records.service import Idempotent
from schemas.fhir.bundle import HistoryEntry, history, searchset
from schemas.fhir.canonical import EXT_REGISTRATION_ACTOR, EXT_REGISTRATION_CHANGE
from schemas.fhir.outcome import operation_outcome, withheld_entry, withheld_issue
from schemas.fhir.record import read_registry_record, registry_record
from schemas.types import RecordStatus, ascii_int

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from registry.auth.scopes import Principal
    from registry.records.repository import RecordVersion, StoredRecord
    from registry.records.service import RecordService
    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.record import RecordClaim

__all__ = ("RecordResources", "Written")


@dataclass(frozen=True, slots=True)
class Written:
    """The answer to a write: the resource as stored and whether the write created it, or the first
    answer to the write's idempotency key again (``replay``)."""

    resource: dict[str, Any]
    record: StoredRecord
    created: bool
    replay: Answer | None = None


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

    def resource(self, stored: StoredRecord, *, reason: str | None = None) -> dict[str, Any]:
        """A stored record as a RegistryRecord (a version of it with the ``reason`` its change gave)."""
        return registry_record(
            self._canon,
            record_id=str(stored.record_id),
            ihi=stored.ihi,
            service_id=stored.service_id,
            status=stored.status,
            type_=stored.type,
            version=stored.version,
            last_updated=stored.last_updated,
            reason=reason,
            labels=stored.security_labels,
        )

    def version(self, version: RecordVersion) -> HistoryEntry:
        """One version of a record (a ``record_history`` row) as a version of its RegistryRecord: the one mapping
        of history rows to resources (vread, instance and type history). The entry names the change
        (``registration-change``: created, registered, status-changed, moved, updated) and who made it
        (``registration-actor``), as ``GET …/history`` and the AuditEvent do; the resource carries the reason."""
        change = version.entry
        created = change.change == "created"
        extension: list[dict[str, Any]] = [
            {"url": self._canon.extension(EXT_REGISTRATION_CHANGE), "valueCode": str(change.change)}
        ]
        if change.actor is not None:
            parts: list[dict[str, Any]] = []
            if change.actor.client_id is not None:
                parts.append({"url": "client", "valueString": change.actor.client_id})
            if change.actor.service_id is not None:
                identifier = {"system": self._canon.service_id_system, "value": change.actor.service_id}
                parts.append({"url": "service", "valueIdentifier": identifier})
            parts.append({"url": "admin", "valueBoolean": change.actor.admin})
            extension.append({"url": self._canon.extension(EXT_REGISTRATION_ACTOR), "extension": parts})
        return HistoryEntry(
            self.version_resource(version),
            method="POST" if created else "PUT",
            status="201" if created else "200",
            when=version.record.last_updated,
            extension=tuple(extension),
        )

    def version_resource(self, version: RecordVersion) -> dict[str, Any]:
        """One version of a record as its RegistryRecord was then, with the reason its change gave."""
        return self.resource(version.record, reason=version.entry.reason)

    async def vread(self, record_id: str, version_id: str, *, requester: Requester) -> RecordVersion:
        """One version of a record by resource id and version id, decided for ``requester``.

        Raises:
            NotFound: no such record or version.
            Forbidden: the version is withheld from ``requester``.
        """
        key, number = _uuid_or_none(record_id), ascii_int(version_id, max_digits=9)
        if key is None or number is None:
            raise errors.NotFound("no such record" if key is None else "no such version of the record")
        return await self._records.version(key, number, requester=requester)

    async def history(self, record_id: str, query: SearchQuery, base: str, *, requester: Requester) -> dict[str, Any]:
        """The instance history of a record: a ``history`` Bundle, newest version first (``_since``, paged), of
        the versions that may be disclosed to ``requester`` (a ``suppressed`` outcome when any were withheld).

        Raises:
            NotFound: no such record.
        """
        key = _uuid_or_none(record_id)
        if key is None:
            raise errors.NotFound("no such record")
        found, total, withheld = await self._records.versions(
            key, requester=requester, since=query.instant("_since"), limit=query.count, offset=query.offset
        )
        return self._history(base, f"Basic/{record_id}/_history", query, found, total, withheld)

    async def type_history(self, query: SearchQuery, base: str, *, requester: Requester) -> dict[str, Any]:
        """The type history: every version of every record the caller may list (its service's; ``admin``: all)
        that may be disclosed to it, as ``history``."""
        found, total, withheld = await self._records.all_versions(
            requester=requester, since=query.instant("_since"), limit=query.count, offset=query.offset
        )
        return self._history(base, "Basic/_history", query, found, total, withheld)

    def _history(
        self, base: str, url: str, query: SearchQuery, found: list[RecordVersion], total: int, withheld: bool
    ) -> dict[str, Any]:
        links = query.links(f"{base}/{url}", total)
        outcome = (url, operation_outcome([withheld_issue(self._canon)])) if withheld else None
        return history(base, [self.version(v) for v in found], total=total, links=links, outcome=outcome)

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
        """A searchset Bundle of the records the query selects (active ones unless ``status`` says; records of
        services that are not routed only for the operator with ``status`` given) that may be disclosed to
        ``requester``, with a ``suppressed`` outcome entry when any were withheld.

        Raises:
            MalformedRequest: the search names neither a patient, a service nor an id.
            Forbidden: it lists another service's patients without naming one (``enumeration``).
        """
        stored, total, withheld = await self._find(query, limit=query.count, offset=query.offset, requester=requester)
        resources = [self.resource(s) for s in stored]
        outcomes = [withheld_entry(self._canon)] if withheld else []
        return searchset(base, resources, total=total, links=query.links(f"{base}/Basic", total), outcomes=outcomes)

    async def matches(self, criteria: Criteria, *, requester: Requester) -> list[StoredRecord]:
        """At most two records the search ``criteria`` select that may be disclosed to ``requester`` (a
        conditional create's question: its answer discloses the match)."""
        stored, _total, _withheld = await self._find(criteria, limit=2, offset=0, requester=requester)
        return stored

    async def _find(
        self, criteria: Criteria, *, limit: int, offset: int, requester: Requester
    ) -> tuple[list[StoredRecord], int, bool]:
        """A page of the records a search selects that may be disclosed to ``requester``, their count and whether
        any were withheld (records of services that are not routed only for the operator with ``status`` given).

        Raises:
            MalformedRequest: the search names neither a patient, a service nor an id.
            Forbidden: it lists another service's patients without naming one (``enumeration``).
        """
        ihis = criteria.any_of(PATIENT_PARAMETERS)
        services = criteria.any_of({"service": self._service})
        ids = criteria.any_of({"_id": any_text})
        statuses = criteria.any_of({"status": self._status})
        if ihis is None and services is None and ids is None:
            message = (
                "a Basic search names a patient (subject:identifier, patient.identifier, patient), a service or an _id"
            )
            raise errors.MalformedRequest(message)
        record_ids = None if ids is None else sorted({key for key in map(_uuid_or_none, ids) if key is not None})
        wanted = statuses if statuses is not None else {str(s) for s in ROUTING_STATUSES}
        if ihis == set() or services == set() or record_ids == [] or not wanted:  # nothing can match
            return [], 0, False
        return await self._records.search(
            ihis=_sorted(ihis), service_ids=_sorted(services), record_ids=record_ids, statuses=sorted(wanted),
            limit=limit, offset=offset, requester=requester,
            unrouted=shows_unrouted(sorted(statuses) if statuses else None, operator=requester.operator),
        )  # fmt: skip

    async def create(
        self, claim: RecordClaim, *, actor: Principal, key: str | None = None, only_new: bool = False
    ) -> Written:
        """``POST``: create the record, or (as the native PUT) re-register or change the one with its key;
        ``only_new`` (a conditional create that matched nothing): answer the record with its key unchanged if
        it exists by the time of the write."""
        return await self._write(claim, None, actor=actor, key=key, route="fhir-create", only_new=only_new)

    async def update(
        self, record_id: str, claim: RecordClaim, expected_version: int | None, *, actor: Principal,
        key: str | None = None,
    ) -> Written:  # fmt: skip
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
        return await self._write(claim, expected_version, actor=actor, key=key, route=f"fhir-update {record_id}")

    async def conditional_update(
        self, criteria: Criteria, claim: RecordClaim, expected_version: int | None, *, actor: Principal,
        key: str | None = None,
    ) -> Written:  # fmt: skip
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
        return await self._write(claim, expected_version, actor=actor, key=key, route="fhir-conditional-update")

    async def _write(
        self, claim: RecordClaim, expected_version: int | None, *, actor: Principal, key: str | None, route: str,
        only_new: bool = False,
    ) -> Written:  # fmt: skip
        """Every FHIR write ends here, through the records service, which refuses (403) a record of
        another service than the caller's own unless the caller holds ``admin``."""
        idempotent = None if key is None else Idempotent(key, route, self._answer)
        put = await self._records.put(
            claim.ihi, claim.service_id, claim.status, claim.type, actor=actor, reason=claim.reason,
            expected_version=expected_version, idempotent=idempotent, only_new=only_new, labels=claim.labels,
        )  # fmt: skip
        return Written(
            resource=self.resource(put.record), record=put.record, created=put.outcome == "created", replay=put.replay
        )

    def _answer(self, stored: StoredRecord, outcome: str) -> Answer:
        """A write's answer as it is kept for its idempotency key: the status and the resource's bytes."""
        return Answer(WRITE_STATUS[outcome], msgspec.json.encode(self.resource(stored)))


def _sorted(values: set[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


def _uuid_or_none(text: str) -> uuid.UUID | None:
    """A resource id as a record id; ids that are not UUIDs name no record."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
