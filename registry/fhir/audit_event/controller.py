"""``GET /fhir/AuditEvent`` (search) and ``GET /fhir/AuditEvent/{id}`` (read): the operator's view of the trail."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from registry.audit.service import AuditQuery
from registry.fhir.audit_event.resources import AuditEventResources
from registry.fhirapi.io import fhir_base, fhir_response, fhir_route
from registry.http import query_items
from schemas.audit import Interaction
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import ResourceCapability, SearchParam

__all__ = ("AUDIT_EVENT", "AuditEventController")

AUDIT_EVENT = ResourceCapability(
    "AuditEvent",
    "The audit trail (IHE BALP-aligned): one event per request that read or wrote patient-linked data, "
    "refused ones included; hash-chained (`ief-registry audit verify`). Admin or `system/AuditEvent.rs`. "
    "Newest first; reading the trail is itself audited.",
    ("read", "search-type"),
    search=(
        SearchParam(
            "patient",
            "reference",
            "The patient's IHI: `<IHI system>|<ihi>` or a bare IHI.",
            f"{HL7_SEARCH_PARAMETER}/clinical-patient",
        ),
        SearchParam("agent", "reference", "The client ID of the caller.", f"{HL7_SEARCH_PARAMETER}/AuditEvent-agent"),
        SearchParam(
            "date",
            "date",
            "When the event was recorded; prefixes eq, ge, gt, le, lt; repeat to give a range.",
            f"{HL7_SEARCH_PARAMETER}/AuditEvent-date",
        ),
        SearchParam("_count", "number", "Page size (default and maximum set by the operator)."),
        SearchParam("_cursor", "string", "Opaque position of the next page (the Bundle's `next` link carries it)."),
    ),
)

Audit = NamedDependency[AuditEventResources]
_SCOPES = ("system/AuditEvent.rs",)
Repeated = Annotated[list[str] | None, QueryParameter(required=False)]
Count = Annotated[int | None, QueryParameter(name="_count", required=False)]
CursorParam = Annotated[str | None, QueryParameter(name="_cursor", required=False)]


class AuditEventController(Controller):
    """The audit trail as FHIR AuditEvents (admin or ``system/AuditEvent.rs``); reading it is audited too."""

    path = "/AuditEvent"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get(
        "/",
        operation_id="searchAuditEvents",
        opt=fhir_route(AUDIT_EVENT.query(), scopes=_SCOPES, audit=Interaction.SEARCH_TYPE),
    )
    async def search(
        self, fhir_audit: Audit, request: Request[Any, Any, Any], patient: Repeated = None, agent: Repeated = None,
        date: Repeated = None, count: Count = None, cursor: CursorParam = None,
    ) -> Response[bytes]:  # fmt: skip
        """AuditEvents by patient (IHI), agent (client ID) and date (eq/ge/gt/le/lt), newest first, paged."""
        query = AuditQuery(patient=patient, agent=agent, date=date, count=count, cursor=cursor)
        params = query_items(request)
        return fhir_response(await fhir_audit.search(query, base=fhir_base(request), params=params))

    @get(
        "/{event_id:str}",
        operation_id="readAuditEvent",
        opt=fhir_route(scopes=_SCOPES, audit=Interaction.READ),
    )
    async def read(self, fhir_audit: Audit, event_id: FromPath[str]) -> Response[bytes]:
        """One AuditEvent by id."""
        return fhir_response(await fhir_audit.read(event_id))
