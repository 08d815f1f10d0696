"""The audit row and its AuditEvent, built from a request's scope (with and without a Principal)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import msgspec
import pytest

from registry.audit.chain import GENESIS, canonical, link_hash
from registry.audit.context import AuditContext, WriteOutcome
from registry.auth.scopes import PRINCIPAL_KEY, Principal
from registry.route import RouteSpec
from schemas.audit import Action, Interaction, StoredAuditEvent, outcome_of
from schemas.fhir.audit import LISTED_ENTITIES, audit_event, check_r4b
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id, with_bad_check_digit

if TYPE_CHECKING:
    from litestar.types import HTTPScope

CANONICAL_BASE = "https://ief-registry.org/fhir"


def _scope(
    interaction: Interaction | None,
    *,
    path_ihi: str | None = None,
    query: bytes = b"",
    principal: Principal | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> HTTPScope:
    state: dict[str, Any] = {"request_id": "rid-1"}
    if principal is not None:
        state[PRINCIPAL_KEY] = principal
    path = f"/registry/records/{path_ihi or 'x'}"
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "client": ("192.0.2.7", 50123),
        "state": state,
        "path_params": {"ihi": path_ihi} if path_ihi else {},
        "route_handler": SimpleNamespace(opt=RouteSpec(audit=interaction).opt if interaction else {}),
    }
    return cast("HTTPScope", scope)


def _principal(client_id: str = "gateway-client") -> Principal:
    return Principal(
        client_id=client_id,
        service_id=make_service_id(),
        scopes=frozenset({"system/Basic.rs"}),
        issuer="https://issuer.test",
        expires_at=int(time.time()) + 60,
        token_id="jti-123",  # noqa: S106 - a token's id (jti), not a secret
    )


def _stored(context: AuditContext, status: int, **kwargs: Any) -> StoredAuditEvent:
    entry = context.entry(status=status, observer="registry-1", **kwargs)
    return StoredAuditEvent(**msgspec.structs.asdict(entry), id=1, event_id=str(uuid.uuid4()), xid=700)


def test_authenticated_read_names_client_service_token_and_address() -> None:
    """A Principal's client ID, bound service, token id and the caller's address go into the row."""
    principal = _principal()
    ihi = make_ihi()
    entry = AuditContext(_scope(Interaction.SEARCH_TYPE, path_ihi=ihi, principal=principal)).entry(
        status=200, observer="registry-1"
    )
    assert (entry.client_id, entry.client_service, entry.token_id) == (
        principal.client_id,
        principal.service_id,
        "jti-123",
    )
    assert entry.client_address == "192.0.2.7"
    assert (entry.interaction, entry.action, entry.outcome, entry.status) == ("search-type", "E", 0, 200)
    assert entry.patients == (ihi,)
    assert entry.request_id == "rid-1"


def test_anonymous_refusal_is_recorded_without_a_client() -> None:
    """A request without a Principal (a 401) is recorded with no client ID, as a minor failure."""
    entry = AuditContext(_scope(Interaction.READ, path_ihi=make_ihi())).entry(status=401, observer="registry-1")
    assert (entry.client_id, entry.client_service, entry.token_id) == (None, None, None)
    assert (entry.outcome, entry.status, entry.action) == (4, 401, "R")


def test_patients_come_from_path_and_known_query_parameters_only_when_valid() -> None:
    """Valid IHIs in the path and in patient-naming parameters are entities; bad ones and other systems are not."""
    in_path, in_query, bare = make_ihi(), make_ihi(), make_ihi()
    query = (
        f"patient={IHI_SYSTEM}|{in_query}&identifier={bare}&subject:identifier=urn:other|{make_ihi()}"
        f"&patient.identifier={with_bad_check_digit(make_ihi())}&status={make_ihi()}"
    ).encode()
    context = AuditContext(_scope(Interaction.SEARCH_TYPE, path_ihi=in_path, query=query))
    context.add_patients([in_query, make_ihi()])
    entry = context.entry(status=200, observer="registry-1")
    assert entry.patients[:3] == (in_path, in_query, bare)
    assert len(entry.patients) == 4
    bad = AuditContext(_scope(Interaction.SEARCH_TYPE, path_ihi=with_bad_check_digit(make_ihi())))
    assert bad.entry(status=422, observer="registry-1").patients == ()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, 0), (201, 0), (304, 0), (401, 4), (403, 4), (404, 4), (413, 4), (422, 4), (429, 4), (500, 8), (503, 12)],
)
def test_outcome_follows_the_http_status(status: int, outcome: int) -> None:
    """2xx/3xx succeed, 4xx are minor failures, 5xx serious, and 503 (unavailable) major."""
    assert outcome_of(status) == outcome


def test_write_overrides_action_and_marks_partial_failure() -> None:
    """An update that created a record is action C; a 200 batch with failed items is a minor failure."""
    context = AuditContext(_scope(Interaction.UPDATE, path_ihi=make_ihi()))
    write = WriteOutcome()
    write.done(status=201, action=Action.CREATE, records=["rec-1"])
    created = context.entry(status=201, observer="r", write=write)
    assert (created.action, created.records, created.outcome) == ("C", ("rec-1",), 0)
    write.done(status=200, failed=True, detail="1 failed")
    batch = AuditContext(_scope(Interaction.BATCH)).entry(status=200, observer="r", write=write)
    assert (batch.outcome, batch.action, batch.detail) == (4, "E", "1 failed")


def test_route_without_audit_declaration_is_not_pending() -> None:
    """Only routes that declare opt["audit"] owe a row; a row written in a transaction settles it."""
    assert not AuditContext(_scope(None)).pending
    context = AuditContext(_scope(Interaction.READ))
    assert context.pending
    context.audited = True
    assert not context.pending


def test_audit_event_is_valid_r4_and_balp_shaped() -> None:
    """The AuditEvent of a peer's authenticated search parses as R4 and carries BALP's codes and entities."""
    ihi = make_ihi()
    principal = _principal("peer-registry")
    scope = _scope(
        Interaction.SEARCH_TYPE,
        path_ihi=ihi,
        query=b"status=removed",
        principal=principal,
        headers=[(b"ief-request-id", b"peer-rid-9")],
    )
    context = AuditContext(scope)
    context.add_records(["0b7c8a52-6e0e-4a3f-9d55-7b0f1f7a1c11"])
    resource = audit_event(_stored(context, 200), canonical_base=CANONICAL_BASE)
    check_r4b(resource)
    assert resource["type"]["code"] == "rest"
    assert resource["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type"}]
    assert (resource["action"], resource["outcome"]) == ("E", "0")
    client, server = resource["agent"]
    assert client["type"]["coding"][0]["code"] == "110153"
    assert client["requestor"] is True
    assert client["who"]["identifier"]["value"] == "peer-registry"
    assert (client["altId"], client["policy"], client["network"]["address"]) == (
        principal.service_id,
        ["jti-123"],
        "192.0.2.7",
    )
    assert server["who"]["identifier"]["value"] == "registry-1"
    assert resource["source"]["observer"]["identifier"]["value"] == "registry-1"
    roles = [(e.get("role", {}).get("code"), e["type"]["code"]) for e in resource["entity"]]
    assert roles == [("1", "1"), ("4", "2"), (None, "XrequestId"), (None, "XrequestId"), ("24", "2")]
    assert resource["entity"][0]["what"]["identifier"] == {"system": IHI_SYSTEM, "value": ihi}
    assert resource["entity"][1]["what"]["reference"] == "Basic/0b7c8a52-6e0e-4a3f-9d55-7b0f1f7a1c11"
    assert resource["entity"][3]["what"]["identifier"]["value"] == "peer-rid-9"


def test_anonymous_failure_event_is_valid_r4() -> None:
    """A refused anonymous request renders as valid R4 with the HTTP status in outcomeDesc."""
    context = AuditContext(_scope(Interaction.UPDATE, path_ihi=make_ihi()))
    context.detail = "no bearer token"
    resource = audit_event(_stored(context, 401), canonical_base=CANONICAL_BASE)
    check_r4b(resource)
    assert resource["outcome"] == "4"
    assert resource["outcomeDesc"].startswith("HTTP 401")
    assert "no bearer token" in resource["outcomeDesc"]
    assert "identifier" not in resource["agent"][0]["who"]


def test_every_column_is_covered_by_the_chain_hash() -> None:
    """Changing any one field of a row changes its chain hash."""
    context = AuditContext(_scope(Interaction.READ, path_ihi=make_ihi(), principal=_principal()))
    event = _stored(context, 200)
    original = link_hash(GENESIS, event)
    changes: dict[str, Any] = {
        "id": 2, "event_id": str(uuid.uuid4()), "xid": 701, "recorded": datetime(2020, 1, 1, tzinfo=UTC),
        "request_id": "x", "peer_request_id": "p", "interaction": "vread", "action": "U", "outcome": 4,
        "status": 201, "detail": "d", "method": "PUT", "path": "/y", "query": "a=b", "client_id": "c",
        "client_service": "s", "client_address": "10.0.0.1", "token_id": "t", "observer": "o",
        "patients": (make_ihi(),), "records": ("r",), "purpose_of_use": "TREAT", "practitioner": "8003610000000000",
        "withheld": 2, "break_glass": True,
    }  # fmt: skip
    assert set(changes) == set(StoredAuditEvent.__struct_fields__)
    for name, value in changes.items():
        assert link_hash(GENESIS, msgspec.structs.replace(event, **{name: value})) != original, name
    assert canonical(event) == canonical(msgspec.structs.replace(event))


def test_unprintable_and_long_request_text_is_cleaned() -> None:
    """Control characters in the query and a peer's request ID are stored as '?', and over-long values are cut."""
    query = b"status=active&note=a%0Ab&x=\x1b[31m" + b"y" * 5000
    headers = [(b"ief-request-id", b"peer\x00\x07id" + b"z" * 200)]
    entry = AuditContext(_scope(Interaction.SEARCH_TYPE, query=query, headers=headers)).entry(
        status=200, observer=make_service_id()
    )
    assert entry.query.startswith("status=active&note=a%0Ab&x=?[31m")
    assert len(entry.query) == 4096
    assert entry.peer_request_id == "peer??id" + "z" * 120
    assert all(c.isprintable() for c in entry.query + entry.path)


def test_a_large_batch_event_lists_patients_and_records_compactly() -> None:
    """Past LISTED_ENTITIES, patients and records are listed in one entity each: valid R4, tens of bytes per item."""
    unique: set[str] = set()
    while len(unique) < 10_000:  # random IHIs collide now and then at this count (a list keeps each once)
        unique.add(make_ihi())
    ihis = sorted(unique)
    records = [str(uuid.uuid4()) for _ in ihis]
    context = AuditContext(_scope(Interaction.BATCH, principal=_principal()))
    context.add_patients(ihis)
    context.add_records(records)
    resource = audit_event(_stored(context, 200), canonical_base=CANONICAL_BASE)
    check_r4b(resource)
    listed = [e for e in resource["entity"] if "detail" in e]
    assert [(e["role"]["code"], e["type"]["code"]) for e in listed] == [("1", "1"), ("4", "2")]
    assert listed[0]["detail"][0]["valueString"].split() == ihis
    assert listed[1]["detail"][0]["valueString"].split() == records
    assert len(msgspec.json.encode(resource)) < 60 * len(ihis)


def test_a_few_patients_are_one_entity_each() -> None:
    """Up to LISTED_ENTITIES patients, each is its own BALP entity (what.identifier the IHI), with no list."""
    ihis = [make_ihi() for _ in range(LISTED_ENTITIES)]
    context = AuditContext(_scope(Interaction.SEARCH_TYPE))
    context.add_patients(ihis)
    context.add_records([uuid.uuid4()])
    entities = audit_event(_stored(context, 200), canonical_base=CANONICAL_BASE)["entity"]
    assert [e["what"]["identifier"]["value"] for e in entities if e.get("role", {}).get("code") == "1"] == ihis
    assert not any("detail" in e for e in entities)
