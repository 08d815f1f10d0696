"""``Basic`` with the RegistryRecord profile: registration through FHIR.

Create (idempotent on the natural key), conditional update on the natural key, update by id,
read and search. Records are never deleted: ``DELETE`` is 405 like any method not routed here.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from registry.auth.requester import Requester
from registry.auth.scopes import Principal
from registry.config import FhirSettings
from registry.fhir.basic.resources import RecordResources, Written
from registry.fhirapi.conditional import asks_if_none_exist, conditional_create_route, if_none_exist
from registry.fhirapi.io import etag, fhir_base, fhir_response, fhir_route, if_match, last_modified, read_resource
from registry.fhirapi.search import Criteria, SearchQuery
from registry.outcome import FHIR_JSON
from registry.records.controller import idempotency_key
from schemas.audit import Interaction
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER, REGISTRY_RECORD
from schemas.fhir.capability import PAGING, ResourceCapability, SearchParam

if TYPE_CHECKING:
    from registry.records.repository import StoredRecord


__all__ = ("BASIC", "BasicController")

RecordId = Annotated[str, PathParameter(description="The record id.")]
VersionId = Annotated[str, PathParameter(description="The version id (meta.versionId).")]
_HISTORY = ("_since", "_count", "_offset")

_READ = ("system/Basic.rs",)
_WRITE = ("system/Basic.cu",)

_SUBJECT = SearchParam(
    "subject",
    "reference",
    "The patient: `subject:identifier=<IHI system>|<IHI>` (or a bare IHI), or `subject=Patient/<IHI>`.",
    f"{HL7_SEARCH_PARAMETER}/Basic-subject",
    spellings=("subject:identifier", "subject"),
)
_PATIENT = SearchParam(
    "patient",
    "reference",
    "The patient: `patient=<IHI>` or `patient=Patient/<IHI>`, or chained `patient.identifier=<IHI system>|<IHI>`.",
    f"{HL7_SEARCH_PARAMETER}/Basic-patient",
    spellings=("patient.identifier", "patient"),
)
_SERVICE = SearchParam(
    "service",
    "token",
    "The service that holds or knows the data: `<service ID system>|<id>` or a bare service ID.",
    "SearchParameter/registryrecord-service",
)
_KEY = (_SUBJECT, _PATIENT, _SERVICE)
"""The search parameters that name a record's natural key: the criteria of a conditional update."""

BASIC = ResourceCapability(
    "Basic",
    "Registry records (profile RegistryRecord): a service holds or knows imaging for a patient (IHI). "
    "Create is idempotent on (IHI, service): an existing record is updated (200) or left unchanged (200); "
    "with If-None-Exist (a Basic search) a matching record is answered (200) without any write, several are 412. "
    "Searches name a patient, a service or an _id; they return active records unless `status` says otherwise. "
    "Every status or type change is a version: vread, instance history and type history (`_since`, paged; a "
    "caller sees its own service's records there, admin every record).",
    ("read", "vread", "search-type", "history-instance", "history-type", "create", "update"),
    search=(
        SearchParam("_id", "token", "The record's id.", f"{HL7_SEARCH_PARAMETER}/Resource-id"),
        *_KEY,
        SearchParam(
            "status",
            "token",
            "`active`, `removed`, `archived` (comma for several); default active.",
            "SearchParameter/registryrecord-status",
        ),
        *PAGING,
    ),
    profile=f"StructureDefinition/{REGISTRY_RECORD}",
    versioning="versioned-update",
    conditional_update=True,
    conditional_create=True,
)

Records = NamedDependency[RecordResources]
Caller = NamedDependency[Principal]
Asking = NamedDependency[Requester]
Settings = NamedDependency[FhirSettings]


def _version_headers(record: StoredRecord) -> dict[str, str]:
    return {"ETag": etag(record.version), "Last-Modified": last_modified(record.last_updated)}


def _written(written: Written, request: Request[Any, Any, Any]) -> Response[bytes]:
    """201 with Location when the write created the record, else 200; ETag of the stored version. A write
    whose Idempotency-Key was accepted before answers the first answer again (status and body)."""
    if written.replay is not None:
        return Response(
            written.replay.body, status_code=written.replay.status, media_type=FHIR_JSON,
            headers={"Idempotent-Replayed": "true"},
        )  # fmt: skip
    headers = _version_headers(written.record)
    if written.created:
        headers["Location"] = f"{fhir_base(request)}/Basic/{written.record.record_id}"
    return fhir_response(written.resource, status=201 if written.created else 200, headers=headers)


class BasicController(Controller):
    """Registry records as RegistryRecord resources."""

    path = "/Basic"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/",
        operation_id="createBasic",
        status_code=201,
        opt=fhir_route(conditional_create_route(BASIC), scopes=_WRITE, audit=Interaction.CREATE, strict=True),
    )
    async def create(
        self, fhir_records: Records, principal: Caller, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Register a record (201), or update (200) or repeat (200) the one with the same IHI and service; with
        ``If-None-Exist``, answer the one record the criteria match (200) without writing (the match is a
        disclosure: what is withheld from the caller does not match)."""
        claim = await read_resource(request, fhir_records.parse)
        existing = await if_none_exist(request, BASIC, partial(fhir_records.matches, requester=requester))
        if existing is not None:
            return fhir_response(fhir_records.resource(existing), headers=_version_headers(existing))
        written = await fhir_records.create(
            claim, actor=principal, key=idempotency_key(request), only_new=asks_if_none_exist(request)
        )
        return _written(written, request)

    @put(
        "/",
        operation_id="conditionalUpdateBasic",
        opt=fhir_route(BASIC.query(_KEY), scopes=_WRITE, audit=Interaction.UPDATE, strict=True),
    )
    async def conditional_update(
        self, fhir_records: Records, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Create (201) or update (200) the record named by patient and service in the query."""
        claim = await read_resource(request, fhir_records.parse)
        written = await fhir_records.conditional_update(
            Criteria.of(request), claim, if_match(request), actor=principal, key=idempotency_key(request)
        )
        return _written(written, request)

    @put("/{record_id:str}", operation_id="updateBasic", opt=fhir_route(scopes=_WRITE, audit=Interaction.UPDATE))
    async def update(
        self, fhir_records: Records, principal: Caller, record_id: RecordId, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Change an existing record's status or type; honours If-Match."""
        claim = await read_resource(request, fhir_records.parse)
        written = await fhir_records.update(
            record_id, claim, if_match(request), actor=principal, key=idempotency_key(request)
        )
        return _written(written, request)

    @get(
        "/_history",
        operation_id="historyTypeBasic",
        opt=fhir_route(_HISTORY, scopes=_READ, audit=Interaction.HISTORY_TYPE),
    )
    async def type_history(
        self, fhir_records: Records, fhir_settings: Settings, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Every version of every record the caller may list that may be disclosed to it, newest first
        (``_since``, paged)."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_records.type_history(query, fhir_base(request), requester=requester))

    @get(
        "/{record_id:str}/_history",
        operation_id="historyInstanceBasic",
        opt=fhir_route(_HISTORY, scopes=_READ, audit=Interaction.HISTORY_INSTANCE),
    )
    async def history(
        self, fhir_records: Records, fhir_settings: Settings, requester: Asking, record_id: RecordId,
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:  # fmt: skip
        """Every version of one record that may be disclosed to the caller, newest first (``_since``, paged)."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_records.history(record_id, query, fhir_base(request), requester=requester))

    @get(
        "/{record_id:str}/_history/{version_id:str}",
        operation_id="vreadBasic",
        opt=fhir_route(scopes=_READ, audit=Interaction.VREAD),
    )
    async def vread(
        self, fhir_records: Records, requester: Asking, record_id: RecordId, version_id: VersionId
    ) -> Response[bytes]:
        """One version of a record, as it was (403 ``withheld`` when it may not be disclosed to the caller)."""
        version = await fhir_records.vread(record_id, version_id, requester=requester)
        return fhir_response(fhir_records.version_resource(version), headers=_version_headers(version.record))

    @get("/{record_id:str}", operation_id="readBasic", opt=fhir_route(scopes=_READ, audit=Interaction.READ))
    async def read(self, fhir_records: Records, requester: Asking, record_id: RecordId) -> Response[bytes]:
        """Read one record, whatever its status (403 ``withheld`` when it may not be disclosed to the caller)."""
        stored = await fhir_records.read(record_id, requester=requester)
        return fhir_response(fhir_records.resource(stored), headers=_version_headers(stored))

    @get("/", operation_id="searchBasic", opt=fhir_route(BASIC.query(), scopes=_READ, audit=Interaction.SEARCH_TYPE))
    async def search(
        self, fhir_records: Records, fhir_settings: Settings, requester: Asking, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search records by patient, service, id and status (what may be disclosed to the caller)."""
        query = SearchQuery.paged(request, fhir_settings)
        return fhir_response(await fhir_records.search(query, fhir_base(request), requester=requester))
