"""``Consent``: the FHIR mapping over ``ConsentService`` (ids, versions, search criteria). No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.fhirapi.search import SearchQuery, code_token, ihi_reference, ihi_token
from schemas.fhir.bundle import searchset
from schemas.fhir.consent import CONSENT_STATUSES, consent_resource, read_consent

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

    async def search(self, query: SearchQuery, base: str, *, requester: Requester) -> dict[str, Any]:
        """A searchset Bundle of the Consents of the patient named (any patient: the operator only)."""
        ihis = query.any_of(CONSENT_PATIENT)
        statuses = query.any_of({"status": _status})
        found: list[StoredConsent] = []
        total = 0
        if ihis != set() and statuses != set():  # else contradictory criteria: nothing can match
            found, total = await self._consents.search(
                ihis=None if ihis is None else sorted(ihis), statuses=None if statuses is None else sorted(statuses),
                limit=query.count, offset=query.offset, operator=requester.operator,
            )  # fmt: skip
        resources = [self.resource(c) for c in found]
        return searchset(base, resources, total=total, links=query.links(f"{base}/Consent", total))
