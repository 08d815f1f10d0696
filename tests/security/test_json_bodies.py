"""JSON bodies nested deep enough to exhaust a decoder, and duplicate keys that make two readers see two documents.

Every JSON body (native writes, batch arrays, NDJSON lines, FHIR resources, Consents included, operations'
Parameters) is decoded by ``schemas.strictjson``: nesting is bounded before decoding, a repeated key is
refused. Each endpoint that takes a body is driven with both; a bad NDJSON line is one item error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from schemas.strictjson import MAX_DEPTH, DuplicateKey, NotJson, TooDeep, decode
from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import endpoint_body, fixture

FHIR = {"content-type": "application/fhir+json"}
JSON = {"content-type": "application/json"}


def nested(levels: int, inner: bytes = b"1") -> bytes:
    """Arrays nested ``levels`` deep around ``inner``."""
    return b"[" * levels + inner + b"]" * levels


DEEP = nested(100_000)
JUST_TOO_DEEP = nested(MAX_DEPTH)  # inside an object: one level more than allowed


def _with(body: bytes, member: bytes) -> bytes:
    """A JSON object body with one more member (``"k": v``) put first."""
    assert body.startswith(b"{")
    return b"{" + member + b"," + body[1:]


def _first_member_twice(body: bytes) -> bytes:
    """The object with its first member repeated (each body here starts with a string-valued member)."""
    end = body.find(b",")
    return _with(body, body[1 : end if end > 0 else -1])


Shape = Callable[[str, str], tuple[str, str, dict[str, str], bytes]]
"""(IHI, service ID) -> (method, path, headers, a valid body) of one endpoint that takes a JSON body."""

ENDPOINTS: dict[str, Shape] = {
    "PUT record": lambda ihi, sid: ("PUT", f"/registry/records/{ihi}/{sid}", JSON, b'{"status":"active"}'),
    "batch array": lambda ihi, sid: (
        "POST",
        "/registry/records:batch",
        JSON,
        msgspec.json.encode([{"ihi": ihi, "serviceId": sid}]),
    ),
    "FHIR Basic create": lambda ihi, sid: (
        "POST",
        "/fhir/Basic",
        FHIR,
        msgspec.json.encode(fixture("Basic-RegistryRecord.json", ihi=ihi, service_id=sid)),
    ),
    "FHIR Basic conditional update": lambda ihi, sid: (
        "PUT",
        f"/fhir/Basic?subject:identifier={IHI_SYSTEM}|{ihi}&service={sid}",
        FHIR,
        msgspec.json.encode(fixture("Basic-RegistryRecord.json", ihi=ihi, service_id=sid)),
    ),
    "FHIR Basic update": lambda ihi, sid: (
        "PUT",
        f"/fhir/Basic/{uuid.uuid4()}",
        FHIR,
        msgspec.json.encode(fixture("Basic-RegistryRecord.json", ihi=ihi, service_id=sid)),
    ),
    "FHIR Consent create": lambda ihi, _sid: (
        "POST",
        "/fhir/Consent",
        FHIR,
        msgspec.json.encode(fixture("Consent-opt-out.json", ihi=ihi)),
    ),
    "FHIR Consent update": lambda ihi, _sid: (
        "PUT",
        f"/fhir/Consent/{uuid.uuid4()}",
        FHIR,
        msgspec.json.encode(fixture("Consent-opt-out.json", ihi=ihi)),
    ),
    "FHIR Subscription create": lambda ihi, _sid: ("POST", "/fhir/Subscription", FHIR, _subscription(ihi)),
    "FHIR Subscription update": lambda ihi, _sid: (
        "PUT",
        f"/fhir/Subscription/{uuid.uuid4()}",
        FHIR,
        _subscription(ihi),
    ),
    "FHIR $locate by POST": lambda ihi, _sid: (
        "POST",
        "/fhir/Patient/$locate",
        FHIR,
        msgspec.json.encode(
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "identifier", "valueIdentifier": {"system": IHI_SYSTEM, "value": ihi}}],
            }
        ),
    ),
    "FHIR Group create": lambda ihi, _sid: ("POST", "/fhir/Group", FHIR, _group(ihi)),
    "FHIR Group update": lambda ihi, _sid: ("PUT", f"/fhir/Group/{uuid.uuid4()}", FHIR, _group(ihi)),
    "FHIR Endpoint create": lambda _ihi, _sid: (
        "POST",
        "/fhir/Endpoint",
        FHIR,
        msgspec.json.encode(endpoint_body(make_service_id())),
    ),
    "FHIR Endpoint update": lambda _ihi, _sid: (
        "PUT",
        f"/fhir/Endpoint/{(sid := make_service_id())}",
        FHIR,
        msgspec.json.encode({**endpoint_body(sid), "id": sid}),
    ),
    "FHIR Subscription $status": lambda _ihi, _sid: (
        "POST",
        "/fhir/Subscription/$status",
        FHIR,
        b'{"resourceType":"Parameters","parameter":[]}',
    ),
}


def _group(ihi: str) -> bytes:
    member = {"entity": {"identifier": {"system": IHI_SYSTEM, "value": ihi}}}
    return msgspec.json.encode({"resourceType": "Group", "type": "person", "actual": True, "member": [member]})


def _subscription(ihi: str) -> bytes:
    return msgspec.json.encode(
        {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "test",
            "criteria": "https://ief-registry.org/fhir/SubscriptionTopic/patient-registration",
            "channel": {"type": "rest-hook", "endpoint": "https://hooks.example/x", "payload": "application/fhir+json"},
            "_criteria": {"extension": [{"url": "x", "valueString": f"Basic?patient={ihi}"}]},
        }
    )


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda body: _with(body, b'"deep":' + DEEP), id="100000 levels"),
        pytest.param(lambda body: _with(body, b'"deep":' + JUST_TOO_DEEP), id="one level too deep"),
        pytest.param(_first_member_twice, id="duplicate key"),
        pytest.param(lambda body: body.replace(b"}", b',"x":1,"x":2}', 1), id="duplicate nested key"),
        pytest.param(lambda body: DEEP, id="a deep body alone"),
    ],
)
async def test_deep_or_duplicate_json_is_400_and_stores_nothing(
    client: httpx.AsyncClient, gateway: str, endpoint: str, spoil: Callable[[bytes], bytes]
) -> None:
    """Every JSON body endpoint answers 400 OperationOutcome to deep nesting and repeated keys, and stores nothing."""
    ihi, sid = make_ihi(), gateway
    method, path, headers, valid = ENDPOINTS[endpoint](ihi, sid)
    body = b"[" + spoil(valid[1:-1]) + b"]" if valid.startswith(b"[") else spoil(valid)  # a batch: spoil its item
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = outcome["issue"][0]["diagnostics"]
    assert "nested more than" in text or "more than once" in text
    assert (await client.get(f"/registry/records/{ihi}")).json()["records"] == []
    assert (await client.get("/fhir/Consent", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}"})).json()[
        "total"
    ] == 0


async def test_a_bad_ndjson_line_is_one_item_error(gateway_client: GatewayClient) -> None:
    """NDJSON lines that are too deep or repeat a key are item errors; the lines around them are stored."""
    sid = gateway_client.service_id
    good = [make_ihi(), make_ihi()]
    lines = [
        msgspec.json.encode({"ihi": good[0], "serviceId": sid}),
        b'{"ihi":"' + make_ihi().encode() + b'","serviceId":"' + sid.encode() + b'","x":' + DEEP + b"}",
        b'{"ihi":"' + make_ihi().encode() + b'","serviceId":"' + sid.encode() + b'","status":"active","status":"x"}',
        nested(MAX_DEPTH + 1),
        msgspec.json.encode({"ihi": good[1], "serviceId": sid}),
    ]
    response = await gateway_client.http.post(
        "/registry/records:batch", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["result"] for r in results] == ["created", "error", "error", "error", "created"]
    assert "nested more than" in results[1]["error"]
    assert "'status' more than once" in results[2]["error"]
    for ihi in good:
        assert len((await gateway_client.http.get(f"/registry/records/{ihi}")).json()["records"]) == 1


def _whole_items(sid: str, count: int, *, fields: str) -> list[dict[str, Any]]:
    more = {"status": "active", "type": "record"} if fields != "ihi and serviceId" else {}
    items: list[dict[str, Any]] = [{"ihi": make_ihi(), "serviceId": sid, **more} for _ in range(count)]
    if fields == "with reasons and keys":
        items = [{**item, "reason": "onboarding", "idempotencyKey": f"load-{n}"} for n, item in enumerate(items)]
    if fields == "with security labels":
        items = [{**item, "securityLabels": ["R", "PSY"]} for item in items]
    return items


@pytest.mark.parametrize(
    "fields", ["ihi and serviceId", "every field", "with reasons and keys", "with security labels"]
)
@pytest.mark.parametrize(
    "repeat", [b',"serviceId":"{sid}"', b',"ihi":"{ihi}"'], ids=["the same value", "another value"]
)
async def test_a_repeated_key_in_one_item_of_a_large_batch_is_400(
    gateway_client: GatewayClient, fields: str, repeat: bytes
) -> None:
    """One item repeating a key among 200 well-formed items of one shape is 400 and stores nothing, although
    every item decodes as a batch item (a decoder keeping the last value would have taken it)."""
    sid = gateway_client.service_id
    items = _whole_items(sid, 200, fields=fields)
    encoded = [msgspec.json.encode(item) for item in items]
    repeated = repeat.replace(b"{sid}", sid.encode()).replace(b"{ihi}", make_ihi().encode())
    encoded[120] = encoded[120][:-1] + repeated + b"}"
    response = await gateway_client.http.post(
        "/registry/records:batch", content=b"[" + b",".join(encoded) + b"]", headers=JSON
    )
    assert response.status_code == 400, response.text
    assert "more than once" in response.json()["issue"][0]["diagnostics"]
    for item in (items[0], items[120], items[-1]):
        assert (await gateway_client.http.get(f"/registry/records/{item['ihi']}")).json()["records"] == []


async def test_a_large_batch_with_reasons_and_keys_is_applied_whole(gateway_client: GatewayClient) -> None:
    """200 well-formed items that each carry a reason and an idempotencyKey are all stored with their reason, and
    sent again are their first results (replayed), nothing written."""
    items = _whole_items(gateway_client.service_id, 200, fields="with reasons and keys")
    first = (await gateway_client.http.post("/registry/records:batch", json=items)).json()
    again = (await gateway_client.http.post("/registry/records:batch", json=items)).json()
    assert (first["created"], first["errors"]) == (200, 0)
    assert {(r["result"], r.get("replayed", False)) for r in again["results"]} == {("created", True)}
    history = (await gateway_client.http.get(f"/registry/records/{items[-1]['ihi']}/history")).json()["history"]
    assert [(e["change"], e.get("reason")) for e in history] == [("created", "onboarding")]


async def test_a_large_batch_with_security_labels_is_applied_whole(gateway_client: GatewayClient) -> None:
    """200 well-formed items that each carry security labels are all stored with them, sorted (the custodian sees
    its own records, labels and all)."""
    items = _whole_items(gateway_client.service_id, 200, fields="with security labels")
    first = (await gateway_client.http.post("/registry/records:batch", json=items)).json()
    assert (first["created"], first["errors"]) == (200, 0)
    found = (await gateway_client.http.get(f"/registry/records/{items[-1]['ihi']}")).json()["records"]
    assert [r["securityLabels"] for r in found] == [["PSY", "R"]]


async def test_a_batch_of_mixed_items_or_colons_in_values_is_applied_item_by_item(
    gateway_client: GatewayClient,
) -> None:
    """Items of different shapes, a value holding a colon, an IHI with a trailing newline and one with
    a foreign digit are each judged on their own: the bad ones are item errors, the others stored."""
    sid = gateway_client.service_id
    good = [make_ihi() for _ in range(3)]
    wide_digit = "\\uff18" + make_ihi()[1:]  # a full-width eight, as a JSON escape
    body = (
        f'[{{"ihi":"{good[0]}","serviceId":"{sid}"}},'
        f'{{"ihi":"{good[1]}","serviceId":"{sid}","status":"active","type":"record"}},'
        f'{{"ihi":"800360:0000000000","serviceId":"{sid}"}},'
        f'{{"ihi":"{make_ihi()}\\n","serviceId":"{sid}"}},'
        f'{{"ihi":"{wide_digit}","serviceId":"{sid}"}},'
        f'{{"ihi":"{good[2]}","serviceId":"{sid}","status":"archived"}}]'
    ).encode()
    response = await gateway_client.http.post("/registry/records:batch", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["result"] for r in results] == ["created", "created", "error", "error", "error", "created"]
    assert all("IHI" in r["error"] for r in results[2:5])
    for ihi, status in zip(good, ["active", "active", "archived"], strict=True):
        found = (await gateway_client.http.get(f"/registry/records/{ihi}", params={"status": status})).json()
        assert [r["status"] for r in found["records"]] == [status]


# --- The decoder itself -------------------------------------------------------------------------


def test_depth_is_allowed_up_to_the_bound_and_refused_past_it() -> None:
    """Exactly ``MAX_DEPTH`` levels decode; one more is refused, arrays and objects alike."""
    assert decode(nested(MAX_DEPTH)) is not None
    with pytest.raises(TooDeep):
        decode(nested(MAX_DEPTH + 1))
    objects = b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH
    assert decode(objects)
    with pytest.raises(TooDeep):
        decode(b"[" + objects + b"]")


def test_depth_counts_the_deepest_branch_not_the_first() -> None:
    """A shallow start does not hide a deep branch further on."""
    with pytest.raises(TooDeep):
        decode(b'[[1],[2],{"a":[3]},' + nested(MAX_DEPTH) + b"]")


def test_brackets_inside_strings_are_not_structure() -> None:
    """Brackets, colons and escaped quotes inside strings neither add depth nor hide it."""
    text = '{"a":"' + "[" * 100 + '","b":"\\"]]]]}}}:","c":"\\\\"}'
    assert decode(text) == {"a": "[" * 100, "b": '"]]]]}}}:', "c": "\\"}
    hidden = b'["]",' * (MAX_DEPTH + 1) + b"1" + b"]" * (MAX_DEPTH + 1)  # each "]" would close a level
    with pytest.raises(TooDeep):
        decode(hidden)


def test_repeated_keys_are_refused_at_any_depth_and_named() -> None:
    """A key repeated in any object is refused and named; the same key in sibling objects is fine."""
    assert decode(b'[{"k":1},{"k":2},{"o":{"k":3}}]') == [{"k": 1}, {"k": 2}, {"o": {"k": 3}}]
    repeats = (b'{"k":1,"k":1}', b'[{"a":{"b":{"k":1,"j":2,"k":3}}}]', b'{"k" : 1 ,\n "k" :2}', b'{"\\u006b":1,"k":2}')
    for body in repeats:
        with pytest.raises(DuplicateKey, match="'k'"):
            decode(body)


def test_answers_of_other_servers_may_repeat_keys() -> None:
    """``duplicate_keys=True`` (gateway and peer answers) keeps the depth bound but not the key check."""
    assert decode(b'{"k":1,"k":2}', duplicate_keys=True) == {"k": 2}
    with pytest.raises(TooDeep):
        decode(DEEP, duplicate_keys=True)


def test_what_is_not_json_stays_not_json() -> None:
    """Truncated, trailing, unterminated and empty texts are ``NotJson`` (400), not another error."""
    for body in (b"", b"{", b'{"a":1} x', b'"' + b'\\"' * 1000, b"[1,]", b"\xff"):
        with pytest.raises(NotJson):
            decode(body)


async def test_valid_bodies_still_work(gateway_client: GatewayClient, client: httpx.AsyncClient) -> None:
    """The ordinary bodies of every endpoint family still decode (the refusals above are not blanket refusals)."""
    ihi, sid = make_ihi(), gateway_client.service_id
    put = await gateway_client.http.put(f"/registry/records/{ihi}/{sid}", json={"status": "active"})
    assert put.status_code == 201
    created = await gateway_client.http.post(
        "/fhir/Basic", json=fixture("Basic-RegistryRecord.json", ihi=make_ihi(), service_id=sid)
    )
    assert created.status_code == 201
    consent = await client.post("/fhir/Consent", json=fixture("Consent-opt-out.json", ihi=make_ihi()))
    assert consent.status_code == 201
