"""``ImagingStudy`` and ``DocumentReference`` searches: the broker's fan-out to the patient's gateways.

Search only (the resources live at the gateways; each entry's ``fullUrl`` is its address there).
``Prefer: wait=N`` shortens the search's deadline to N seconds; ``Preference-Applied`` says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency

from broker.discovery.query import DOCUMENT_REFERENCE, IMAGING_STUDY, PAGE_TOKEN, DiscoveryQuery, SearchKind
from broker.discovery.resources import DiscoveryResources
from registry.auth.requester import Requester
from registry.config import FhirSettings
from registry.fhirapi.io import fhir_base, fhir_response, fhir_route
from registry.fhirapi.search import SearchQuery
from registry.http import preference, request_id
from schemas.audit import Interaction
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import PAGING, ResourceCapability, SearchParam
from schemas.types import ascii_int

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = (
    "DOCUMENT_REFERENCE_SEARCH",
    "IMAGING_STUDY_SEARCH",
    "DocumentReferenceController",
    "ImagingStudyController",
    "prefer_wait",
)

_PAGE_TOKEN = SearchParam(
    PAGE_TOKEN, "string", "Opaque token of a merged result kept for paging; the Bundle's paging links carry it."
)
_BROKERED = (
    " The broker asks every gateway holding data for the patient (federation followed) and merges their answers: "
    "entries de-duplicated, each with its absolute `fullUrl` at its gateway and the gateway in `meta.source`, newest "
    "first; one OperationOutcome entry (`search.mode = outcome`) names every gateway that failed, timed out or was "
    "skipped. `Prefer: wait=N` shortens the deadline."
)


def _patient(resource_type: str) -> tuple[SearchParam, SearchParam]:
    return (
        SearchParam(
            "patient",
            "reference",
            "The patient (exactly one): `patient.identifier=<IHI system>|<IHI>` (or a bare IHI), or "
            "`patient=<IHI>` / `Patient/<IHI>`.",
            f"{HL7_SEARCH_PARAMETER}/clinical-patient",
            spellings=("patient.identifier", "patient"),
        ),
        SearchParam(
            "subject",
            "reference",
            "The patient, as `subject:identifier=<IHI system>|<IHI>` or `subject=Patient/<IHI>`.",
            f"{HL7_SEARCH_PARAMETER}/{resource_type}-subject",
            spellings=("subject:identifier", "subject"),
        ),
    )


IMAGING_STUDY_SEARCH = ResourceCapability(
    "ImagingStudy",
    "Imaging studies of one patient, wherever they are held." + _BROKERED,
    ("search-type",),
    search=(
        *_patient("ImagingStudy"),
        SearchParam(
            "modality",
            "token",
            "DICOM modality (`CT`, or `<system>|CT`; commas for several), passed to every gateway.",
            f"{HL7_SEARCH_PARAMETER}/ImagingStudy-modality",
        ),
        SearchParam(
            "started",
            "date",
            "When the study started, with FHIR prefixes (`ge2024-01-01`); passed to IEF-style gateways, applied by "
            "the broker to Harmony-style answers.",
            f"{HL7_SEARCH_PARAMETER}/ImagingStudy-started",
        ),
        *PAGING,
        _PAGE_TOKEN,
    ),
)

DOCUMENT_REFERENCE_SEARCH = ResourceCapability(
    "DocumentReference",
    "Documents (imaging reports) of one patient, wherever they are held." + _BROKERED,
    ("search-type",),
    search=(
        *_patient("DocumentReference"),
        SearchParam(
            "date",
            "date",
            "When the document was created, with FHIR prefixes; passed to IEF-style gateways, applied by the broker "
            "to Harmony-style answers.",
            f"{HL7_SEARCH_PARAMETER}/DocumentReference-date",
        ),
        *PAGING,
        _PAGE_TOKEN,
    ),
)

Discovery = NamedDependency[DiscoveryResources]
Settings = NamedDependency[FhirSettings]
Asking = NamedDependency[Requester]


def prefer_wait(scope: Scope) -> int | None:
    """The ``wait`` preference of a request (RFC 7240), in seconds; None without a usable one."""
    return ascii_int(preference(scope, "wait") or "")


async def _search(
    kind: SearchKind,
    discovery: DiscoveryResources,
    settings: FhirSettings,
    requester: Requester,
    request: Request[Any, Any, Any],
) -> Response[bytes]:
    query = DiscoveryQuery.parse(kind, SearchQuery.paged(request, settings))
    wait = prefer_wait(request.scope)
    budget = discovery.budget(wait)
    bundle = await discovery.search(
        query, base=fhir_base(request), budget=budget, request_id=request_id(request), requester=requester
    )
    applied = {"Preference-Applied": f"wait={budget:g}"} if wait is not None and budget < discovery.deadline else None
    return fhir_response(bundle, headers=applied)


class ImagingStudyController(Controller):
    """Imaging studies of a patient, from every gateway that holds some."""

    path = "/ImagingStudy"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get(
        "/",
        operation_id="searchImagingStudy",
        opt=fhir_route(IMAGING_STUDY_SEARCH.query(), scopes=(IMAGING_STUDY.scope,), audit=Interaction.SEARCH_TYPE),
    )
    async def search(
        self, fhir_discovery: Discovery, fhir_settings: Settings, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search the patient's gateways for imaging studies and merge what they hold."""
        return await _search(IMAGING_STUDY, fhir_discovery, fhir_settings, requester, request)


class DocumentReferenceController(Controller):
    """Documents (reports) of a patient, from every gateway that holds some."""

    path = "/DocumentReference"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get(
        "/",
        operation_id="searchDocumentReference",
        opt=fhir_route(
            DOCUMENT_REFERENCE_SEARCH.query(), scopes=(DOCUMENT_REFERENCE.scope,), audit=Interaction.SEARCH_TYPE
        ),
    )
    async def search(
        self, fhir_discovery: Discovery, fhir_settings: Settings, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search the patient's gateways for documents and merge what they hold."""
        return await _search(DOCUMENT_REFERENCE, fhir_discovery, fhir_settings, requester, request)
