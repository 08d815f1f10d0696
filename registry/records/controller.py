"""Native registry API (DESIGN 4.1): the fast path for gateways and peers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, QueryParameter

from registry import errors
from registry.auth.requester import Requester, requester_from
from registry.auth.scopes import caller_of
from registry.http import decode_json_body, media_type, request_id
from registry.records.idempotency import Answer, parse_key
from registry.records.jobs import DEFAULT_STALE_AGE, LifecycleJobs, parse_age
from registry.records.lifecycle import WRITE_STATUS, to_record
from registry.records.service import Idempotent, Put, RecordService
from registry.route import RouteSpec
from schemas.audit import Interaction
from schemas.records import BatchItem, BatchResult, RecordHistory, RecordList, RecordWrite, StaleReport
from schemas.types import RecordStatus, RecordType

__all__ = ("BatchController", "RecordController", "ReportController", "idempotency_key", "replayed")

_NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
_encoder = msgspec.json.Encoder()
_WRITE = ("system/Basic.cu",)
_READ = ("system/Basic.rs",)

Records = NamedDependency[RecordService]
Asking = NamedDependency[Requester]
IhiParam = Annotated[str, Parameter(description="The patient's IHI (16 digits, 800360 prefix, Luhn check digit).")]
ServiceIdParam = Annotated[str, Parameter(description="The service ID: a UUID or a ULID.")]
StatusParam = Annotated[
    list[str] | None,
    Parameter(required=False, description="Statuses to include (repeatable); default active."),
]
FollowParam = Annotated[
    bool,
    Parameter(
        required=False,
        description="true: follow `registry` records to the registries they name (federation); "
        "false (default): return them as they are, for the caller to follow.",
    ),
]


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The key of the request's ``Idempotency-Key`` header, or None without one.

    Raises:
        MalformedRequest: the header is not a valid key.
    """
    header = request.headers.get("idempotency-key")
    return None if header is None else parse_key(header)


def replayed(put: Put, media: str) -> Response[bytes] | None:
    """The first answer to an idempotency key again, or None when the write was not a replay."""
    if put.replay is None:
        return None
    return Response(
        put.replay.body, status_code=put.replay.status, media_type=media, headers={"Idempotent-Replayed": "true"}
    )


def _native_answer(stored: Any, outcome: str) -> Answer:
    return Answer(WRITE_STATUS[outcome], _encoder.encode(to_record(stored)))


class RecordController(Controller):
    """Records of one patient: write one, list them, read their history."""

    path = "/registry/records"
    tags = ["records"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @put(
        "/{ihi:str}/{service_id:str}",
        operation_id="putRecord",
        status_code=200,
        opt=RouteSpec(scopes=_WRITE, audit=Interaction.UPDATE).opt,
    )
    async def put_record(
        self,
        records: Records,
        request: Request[Any, Any, Any],
        ihi: IhiParam,
        service_id: ServiceIdParam,
        data: JSONBody[RecordWrite],
    ) -> Response[Any]:
        """Register (201), re-register (200: an active record registered again is an event) or change (200) a
        record of the caller's own service. With ``Idempotency-Key``, a retry answers the first answer again."""
        key = idempotency_key(request)
        idempotent = None if key is None else Idempotent(key, "native-put", _native_answer)
        # The caller from the request, not a second dependency: Litestar resolves two dependencies of one
        # handler as concurrent tasks in an anyio task group, 4 % of a write's CPU (docs/benchmarks.md).
        put = await records.put(
            ihi, service_id, data.status, data.type, actor=caller_of(request), reason=data.reason,
            idempotent=idempotent, labels=data.security_labels,
        )  # fmt: skip
        return replayed(put, "application/json") or Response(
            to_record(put.record), status_code=WRITE_STATUS[put.outcome]
        )

    @get(
        "/{ihi:str}",
        operation_id="getRecords",
        opt=RouteSpec(query=frozenset({"status", "follow"}), scopes=_READ, audit=Interaction.SEARCH_TYPE).opt,
    )
    async def get_records(
        self,
        records: Records,
        request: Request[Any, Any, Any],
        ihi: IhiParam,
        status: StatusParam = None,
        follow: FollowParam = False,
    ) -> RecordList:
        """The services holding data for a patient: active records, or the statuses asked for.

        With ``follow=true`` this registry follows ``registry`` records to the registries they name
        (and theirs in turn) and answers what it learned, with ``unresolved`` for what it could not.
        Records of disabled or retired services are shown only to the operator, with ``status`` given.
        """
        return await records.for_ihi(
            ihi, status, requester=requester_from(request), follow=follow, request_id=request_id(request),
            answers=True,
        )  # fmt: skip

    @get(
        "/{ihi:str}/history",
        operation_id="getRecordHistory",
        opt=RouteSpec(scopes=_READ, audit=Interaction.HISTORY_TYPE).opt,
    )
    async def get_history(self, records: Records, requester: Asking, ihi: IhiParam) -> RecordHistory:
        """Every status change of every record of a patient, oldest first (what may be disclosed to the caller)."""
        return await records.history(ihi, requester=requester)


class BatchController(Controller):
    """Bulk registration: many records in one request."""

    path = "/registry/records:batch"
    tags = ["records"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/",
        operation_id="putRecordsBatch",
        status_code=200,
        opt=RouteSpec(
            media_types=frozenset({"application/json", *_NDJSON}), scopes=_WRITE, audit=Interaction.BATCH
        ).opt,
    )
    async def batch(self, records: Records, request: Request[Any, Any, Any]) -> BatchResult:
        """Apply up to 10,000 records (JSON array or NDJSON); items of other services are refused one by one."""
        body = await request.body()
        items: list[Any]
        if media_type(request) in _NDJSON:
            items = [line for line in body.splitlines() if line.strip()]
        else:
            items = _batch_array(body)
        return await records.batch(items, actor=caller_of(request))


class _SentItem(BatchItem, kw_only=True):
    """A batch item that names its status and type (a ``BatchItem``: these decode with no default to fill)."""

    status: RecordStatus
    type: RecordType


_sent_items_decoder = msgspec.json.Decoder(list[_SentItem])
_items_decoder = msgspec.json.Decoder(list[BatchItem])


def _batch_array(body: bytes) -> list[Any]:
    """A JSON array batch's items: ``BatchItem``s when the body decodes as such at once, else decoded JSON values.

    Most batches are valid as a whole and decode in one typed pass, where ``decode_json_body`` and a
    conversion per item take twice as long. A typed decode keeps the last of a repeated key, so its
    result is used only when the body's colons are exactly the keys its items must have (four each,
    or two each when none names a status or type, and one more for each ``reason``,
    ``idempotencyKey`` and ``securityLabels`` given): a colon more is a repeated key (or one in a
    string), and such a body goes the one way (``schemas.strictjson``: a repeated key or deep
    nesting anywhere is 400). A typed decode never nests deeper than an item.

    Raises:
        MalformedRequest: what ``decode_json_body`` refuses.
        InvalidInput: the body is JSON but not an array.
    """
    colons = body.count(b":")
    for decoder, keys in ((_sent_items_decoder, 4), (_items_decoder, 2)):
        try:
            items: Sequence[BatchItem] = decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if not items:
            continue
        plain = keys * len(items)  # no item can have fewer colons: checked first, the usual batch costs no count
        if colons == plain or colons == plain + sum(
            (item.reason is not None) + (item.idempotency_key is not None) + (item.security_labels is not None)
            for item in items
        ):
            return list(items)
    decoded = decode_json_body(body)
    if not isinstance(decoded, list):
        raise errors.InvalidInput(f"a batch is a JSON array of items, not {type(decoded).__name__}")
    return decoded


Lifecycle = NamedDependency[LifecycleJobs]


class ReportController(Controller):
    """The operator's reports over records as a whole."""

    path = "/registry/reports"
    tags = ["records"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/stale", operation_id="staleReport", opt=RouteSpec(query=frozenset({"olderThan"}), scopes=("admin",)).opt)
    async def stale(
        self,
        lifecycle: Lifecycle,
        older_than: Annotated[
            str, QueryParameter(name="olderThan", description="365d (the default), 26w, 12h…", required=False)
        ] = DEFAULT_STALE_AGE,
    ) -> StaleReport:
        """Per service, the active records not registered for ``olderThan`` (the operator's; ``records stale``)."""
        cutoff, services = await lifecycle.stale(parse_age(older_than))
        return StaleReport(
            older_than=older_than, cutoff=cutoff, total=sum(s.records for s in services), services=services
        )
