"""``Consent``: the FHIR mapping over ``ConsentService`` (ids, versions, search criteria). No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.fhirapi.search import Criteria, SearchQuery, code_token, ihi_reference, ihi_token
from schemas.fhir.bundle import HistoryEntry, history, searchset
from schemas.fhir.consent import CONSENT_STATUSES, consent_resource, read_consent
from schemas.types import ascii_int

if TYPE_CHECKING:
    from registry.auth.requester import Requester
    from registry.privacy.consents import ConsentService
    from registry.privacy.repository import StoredConsent
    from schemas.fhir.consent import ConsentClaim

__all__ = ("CONSENT_PATIENT", "ConsentResources")

CONSENT_PATIENT = {"patient.identifier": ihi_token, "patient": ihi_reference}
"""The spellings that name a Consent's patient in a search."""

_status = code_token({code: code for code in CONSENT_STATUSES}, "http://hl7.org/fhir/consent-state-codes")


class ConsentResources:
    """Create, read, update and search Consents as FHIR resources."""

    def __init__(self, consents: ConsentService) -> None:
        self._consents = consents

    @staticmethod
    def parse(body: bytes) -> ConsentClaim:
        """A Consent body, validated and compiled (``schemas.fhir.consent``)."""
        return read_consent(body)

    @staticmethod
    def resource(stored: StoredConsent) -> dict[str, Any]:
        """A stored Consent as answered."""
        return consent_resource(
            stored.resource, consent_id=str(stored.consent_id), version=stored.version,
            last_updated=stored.last_updated,
        )  # fmt: skip

    async def create(self, claim: ConsentClaim, *, requester: Requester) -> StoredConsent:
        """``POST``: a new Consent."""
        return await self._consents.create(claim, actor=requester.client_id)

    async def update(
        self, consent_id: str, claim: ConsentClaim, expected_version: int | None, *, requester: Requester
    ) -> StoredConsent:
        """``PUT Consent/{id}``: a new version (``inactive`` withdraws it)."""
        return await self._consents.update(
            consent_id, claim, actor=requester.client_id, expected_version=expected_version
        )

    async def read(self, consent_id: str) -> StoredConsent:
        """``GET Consent/{id}``."""
        return await self._consents.read(consent_id)

    async def vread(self, consent_id: str, version_id: str) -> StoredConsent:
        """``GET Consent/{id}/_history/{vid}``: one version as it was written.

        Raises:
            NotFound: no such Consent or version.
        """
        number = ascii_int(version_id, max_digits=9)
        if number is None:
            raise errors.NotFound("no such version of the Consent")
        return await self._consents.version(consent_id, number)

    async def history(self, consent_id: str, query: SearchQuery, base: str) -> dict[str, Any]:
        """``GET Consent/{id}/_history``: a ``history`` Bundle, newest version first (``_since``, paged)."""
        found, total = await self._consents.versions(
            consent_id, since=query.instant("_since"), limit=query.count, offset=query.offset
        )
        versions = [
            HistoryEntry(self.resource(c), method="PUT", status="200", when=c.last_updated)
            if c.version > 1
            else HistoryEntry(self.resource(c), method="POST", status="201", when=c.last_updated)
            for c in found
        ]
        return history(base, versions, total=total, links=query.links(f"{base}/Consent/{consent_id}/_history", total))

    async def search(self, query: SearchQuery, base: str, *, requester: Requester) -> dict[str, Any]:
        """A searchset Bundle of the Consents of the patient named (any patient: the operator only)."""
        found, total = await self._find(query, limit=query.count, offset=query.offset, requester=requester)
        resources = [self.resource(c) for c in found]
        return searchset(base, resources, total=total, links=query.links(f"{base}/Consent", total))

    async def matches(self, criteria: Criteria, *, requester: Requester) -> list[StoredConsent]:
        """At most two Consents the search ``criteria`` select (a conditional create's question)."""
        found, _total = await self._find(criteria, limit=2, offset=0, requester=requester)
        return found

    async def _find(
        self, criteria: Criteria, *, limit: int, offset: int, requester: Requester
    ) -> tuple[list[StoredConsent], int]:
        ihis = criteria.any_of(CONSENT_PATIENT)
        statuses = criteria.any_of({"status": _status})
        if ihis == set() or statuses == set():  # contradictory criteria: nothing can match
            return [], 0
        return await self._consents.search(
            ihis=None if ihis is None else sorted(ihis), statuses=None if statuses is None else sorted(statuses),
            limit=limit, offset=offset, operator=requester.operator,
        )  # fmt: skip
