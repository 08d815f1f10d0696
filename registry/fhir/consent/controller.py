"""``Consent`` (IHE Privacy Consent on FHIR shape): record, change, read and find a patient's consent.

Create (conditional with ``If-None-Exist``), update (``status: inactive`` withdraws a Consent), read,
vread, instance history, search by patient and status. Consents are never deleted: ``DELETE`` is 405
like any method not routed here. Every change keeps a version in the Consent's history and takes
effect on every server process for the next request.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from registry.auth.requester import Requester
from registry.config import FhirSettings
from registry.fhir.consent.resources import ConsentResources
from registry.fhirapi.conditional import conditional_create_route, if_none_exist
from registry.fhirapi.io import etag, fhir_base, fhir_response, fhir_route, if_match, last_modified, read_resource
from registry.fhirapi.search import SearchQuery
from registry.privacy.repository import StoredConsent
from schemas.audit import Interaction
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import PAGING, ResourceCapability, SearchParam

__all__ = ("CONSENT", "ConsentController")

ConsentId = Annotated[str, PathParameter(description="The Consent id.")]
VersionId = Annotated[str, PathParameter(description="The version id (meta.versionId).")]
_HISTORY = ("_since", "_count", "_offset")

_READ = ("system/Consent.rs",)
_WRITE = ("system/Consent.cu",)

CONSENT = ResourceCapability(
    "Consent",
    "A patient's privacy consent (IHE PCF shape): `provision.type` deny at the base with no criteria is an "
    "opt-out; nested provisions by actor (a service, as Endpoint/<id> or HPI-O; role CST: the custodian holding "
    "the record), purpose (v3 PurposeOfUse), securityLabel and period make exceptions and restrictions. Only "
    "active Consents are enforced; `status: inactive` withdraws one. Every disclosure of the patient's records "
    "obeys them from the next request on. With If-None-Exist (a Consent search) a matching Consent is answered "
    "(200) without any write, several are 412. Every version is kept: vread and instance history.",
    ("read", "vread", "search-type", "history-instance", "create", "update"),
    search=(
        SearchParam(
            "patient",
            "reference",
            "The patient: `patient.identifier=<IHI system>|<IHI>` (or a bare IHI), or `patient=Patient/<IHI>`. "
            "A search without a patient is the operator's only.",
            f"{HL7_SEARCH_PARAMETER}/clinical-patient",
            spellings=("patient.identifier", "patient"),
        ),
        SearchParam(
            "status",
            "token",
            "`draft`, `proposed`, `active`, `rejected`, `inactive`, `entered-in-error` (comma for several).",
            f"{HL7_SEARCH_PARAMETER}/Consent-status",
        ),
        *PAGING,
    ),
    versioning="versioned-update",
    conditional_create=True,
)

Consents = NamedDependency[ConsentResources]
Asking = NamedDependency[Requester]
Settings = NamedDependency[FhirSettings]


def _answer(
    stored: StoredConsent, resources: ConsentResources, *, status: int = 200, location: str | None = None
) -> Response[bytes]:
    headers = {"ETag": etag(stored.version), "Last-Modified": last_modified(stored.last_updated)}
    if location:
        headers["Location"] = location
    return fhir_response(resources.resource(stored), status=status, headers=headers)


class ConsentController(Controller):
    """Consents as FHIR resources."""

    path = "/Consent"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/",
        operation_id="createConsent",
        status_code=201,
        opt=fhir_route(conditional_create_route(CONSENT), scopes=_WRITE, audit=Interaction.CREATE, strict=True),
    )
    async def create(
        self, fhir_consents: Consents, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Record a Consent (201, with its id in Location); with ``If-None-Exist``, answer the one Consent the
        criteria match (200) without writing."""
        claim = await read_resource(request, fhir_consents.parse)
        existing = await if_none_exist(request, CONSENT, partial(fhir_consents.matches, requester=requester))
        if existing is not None:
            return _answer(existing, fhir_consents)
        stored = await fhir_consents.create(claim, requester=requester)
        location = f"{fhir_base(request)}/Consent/{stored.consent_id}"
        return _answer(stored, fhir_consents, status=201, location=location)

    @put("/{consent_id:str}", operation_id="updateConsent", opt=fhir_route(scopes=_WRITE, audit=Interaction.UPDATE))
    async def update(
        self, fhir_consents: Consents, requester: Asking, consent_id: ConsentId, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """A new version of a Consent (``inactive`` withdraws it); honours If-Match."""
        claim = await read_resource(request, fhir_consents.parse)
        stored = await fhir_consents.update(consent_id, claim, if_match(request), requester=requester)
        return _answer(stored, fhir_consents)

    @get(
        "/{consent_id:str}/_history",
        operation_id="historyInstanceConsent",
        opt=fhir_route(_HISTORY, scopes=_READ, audit=Interaction.HISTORY_INSTANCE),
    )
    async def history(
        self, fhir_consents: Consents, fhir_settings: Settings, consent_id: ConsentId, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Every version of one Consent, newest first (``_since``, paged)."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_consents.history(consent_id, query, fhir_base(request)))

    @get(
        "/{consent_id:str}/_history/{version_id:str}",
        operation_id="vreadConsent",
        opt=fhir_route(scopes=_READ, audit=Interaction.VREAD),
    )
    async def vread(self, fhir_consents: Consents, consent_id: ConsentId, version_id: VersionId) -> Response[bytes]:
        """One version of a Consent, as it was written."""
        return _answer(await fhir_consents.vread(consent_id, version_id), fhir_consents)

    @get("/{consent_id:str}", operation_id="readConsent", opt=fhir_route(scopes=_READ, audit=Interaction.READ))
    async def read(self, fhir_consents: Consents, consent_id: ConsentId) -> Response[bytes]:
        """Read one Consent."""
        return _answer(await fhir_consents.read(consent_id), fhir_consents)

    @get(
        "/", operation_id="searchConsent", opt=fhir_route(CONSENT.query(), scopes=_READ, audit=Interaction.SEARCH_TYPE)
    )
    async def search(
        self, fhir_consents: Consents, fhir_settings: Settings, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search Consents by patient and status."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_consents.search(query, fhir_base(request), requester=requester))
