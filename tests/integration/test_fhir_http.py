"""What FHIR says about every route, over real HTTP: HEAD, OPTIONS, result parameters, conditional reads,
``Prefer: return``, operations by POST, SMART discovery under the FHIR base."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import record_body
from tests.server import RunningServer

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


async def _record(fhir: httpx.AsyncClient, ihi: str, service_id: str, **changes: str) -> dict[str, Any]:
    response = await fhir.post("/fhir/Basic", json=record_body(ihi, service_id, **changes))
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/fhir/metadata", True),
        ("/.well-known/smart-configuration", True),
        ("/fhir/.well-known/smart-configuration", True),
        ("/health/live", True),
        ("/fhir/StructureDefinition", True),
        ("/fhir/Endpoint", False),
        ("/", True),
        ("/schema", True),
        ("/schema/openapi.json", True),
        ("/schema/assets/redoc.standalone.js", True),
    ],
)
async def test_head_answers_what_get_would_without_the_body(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, path: str, public: bool
) -> None:
    """HEAD works wherever GET does: the GET's status and headers (its length too), no body; it needs what GET needs."""
    get = await client.get(path)
    head = await client.head(path)
    assert (head.status_code, head.content) == (get.status_code, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert (await anonymous.head(path)).status_code == (200 if public else 401)


async def test_head_of_a_record_is_audited_like_its_read(fhir: httpx.AsyncClient, gateway: str) -> None:
    """HEAD of a patient-linked read answers its ETag and (the audit ledger checks) leaves one audit row."""
    record = await _record(fhir, make_ihi(), gateway)
    head = await fhir.head(f"/fhir/Basic/{record['id']}")
    assert (head.status_code, head.headers["etag"], head.content) == (200, 'W/"1"', b"")


async def test_options_is_public_on_public_routes_only(anonymous: httpx.AsyncClient) -> None:
    """OPTIONS of a public path needs no token and names HEAD beside GET; on a protected path it needs one."""
    for path in ("/fhir/metadata", "/.well-known/smart-configuration", "/health/live", "/", "/schema",
                 "/schema/openapi.json", "/schema/assets/swagger-ui.css"):  # fmt: skip
        response = await anonymous.options(path)
        assert response.status_code == 204, path
        assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "HEAD", "OPTIONS"}, path
    assert (await anonymous.options("/fhir/Basic")).status_code == 401


async def test_method_not_allowed_names_head(fhir: httpx.AsyncClient) -> None:
    """A 405 of a path that takes GET lists HEAD among the methods it allows."""
    response = await fhir.delete("/fhir/metadata")
    assert response.status_code == 405
    assert "HEAD" in {m.strip() for m in response.headers["allow"].split(",")}


async def test_summary_and_elements_shape_every_match(fhir: httpx.AsyncClient, gateway: str) -> None:
    """_summary=true keeps summary elements, _summary=data drops only the narrative, _elements keeps those named plus
    id, meta and mandatory ones; each subsetted resource is tagged SUBSETTED; every answer is still valid R4."""
    ihi = make_ihi()
    await _record(fhir, ihi, gateway)
    search = {"patient": ihi}
    full = (await fhir.get("/fhir/Basic", params=search)).json()["entry"][0]["resource"]
    summary = (await fhir.get("/fhir/Basic", params={**search, "_summary": "true"})).json()["entry"][0]["resource"]
    assert "extension" in full
    assert set(summary) == {"resourceType", "id", "meta", "code", "subject"}
    assert SUBSETTED in summary["meta"]["tag"]
    elements = (await fhir.get("/fhir/Basic", params={**search, "_elements": "subject"})).json()
    kept = elements["entry"][0]["resource"]
    assert set(kept) == {"resourceType", "id", "meta", "code", "subject"}  # code is mandatory (1..1)
    data = (await fhir.get("/fhir/Basic", params={**search, "_summary": "data"})).json()["entry"][0]["resource"]
    assert data == full  # a RegistryRecord has no narrative to leave out
    endpoint = (await fhir.get(f"/fhir/Endpoint/{gateway}", params={"_elements": "name"})).json()
    assert set(endpoint) == {"resourceType", "id", "meta", "name", "status", "connectionType", "payloadType", "address"}


async def test_summary_count_and_total(fhir: httpx.AsyncClient, gateway: str, server: RunningServer) -> None:
    """_summary=count answers the total without entries; _total=none leaves the total out; _total=accurate keeps it."""
    ihi = make_ihi()
    other = make_service_id()
    await server.add_service(other)
    await _record(fhir, ihi, gateway)
    await _record(fhir, ihi, other)
    counted = (await fhir.get("/fhir/Basic", params={"patient": ihi, "_summary": "count"})).json()
    assert (counted["total"], counted.get("entry")) == (2, None)
    untotalled = (await fhir.get("/fhir/Basic", params={"patient": ihi, "_total": "none"})).json()
    assert "total" not in untotalled
    assert len(untotalled["entry"]) == 2
    accurate = (await fhir.get("/fhir/Basic", params={"patient": ihi, "_total": "accurate"})).json()
    assert accurate["total"] == 2


@pytest.mark.parametrize(
    "params", [{"_summary": "maybe"}, {"_total": "some"}, {"_pretty": "yes"}, {"_summary": ["true", "data"]}]
)
async def test_malformed_result_parameters_are_400(fhir: httpx.AsyncClient, params: dict[str, Any]) -> None:
    """A result parameter with a value FHIR does not define, or given twice, is 400 naming it."""
    response = await fhir.get("/fhir/metadata", params=params)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [next(iter(params))]


async def test_pretty_indents_the_answer(fhir: httpx.AsyncClient) -> None:
    """_pretty=true answers the same resource, indented."""
    plain = await fhir.get("/fhir/metadata")
    pretty = await fhir.get("/fhir/metadata", params={"_pretty": "true"})
    assert b"\n  " in pretty.content
    assert b"\n" not in plain.content
    assert pretty.json() == plain.json()


async def test_if_none_match_answers_304(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A read whose ETag matches If-None-Match (weakly, or *) is 304 without a body; another version is 200."""
    record = await _record(fhir, make_ihi(), gateway)
    path = f"/fhir/Basic/{record['id']}"
    for condition in ('W/"1"', '"1"', '"7", W/"1"', "*"):
        response = await fhir.get(path, headers={"If-None-Match": condition})
        assert (response.status_code, response.content) == (304, b""), condition
        assert response.headers["etag"] == 'W/"1"'
    assert (await fhir.get(path, headers={"If-None-Match": 'W/"2"'})).status_code == 200


async def test_prefer_return_on_create_and_update(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Prefer: return=minimal answers no body (headers kept), OperationOutcome an outcome, representation the
    resource; each says Preference-Applied."""
    ihi = make_ihi()
    minimal = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway), headers={"Prefer": "return=minimal"})
    assert (minimal.status_code, minimal.content) == (201, b"")
    assert minimal.headers["preference-applied"] == "return=minimal"
    assert minimal.headers["etag"] == 'W/"1"'
    record_id = minimal.headers["location"].rsplit("/", 1)[-1]
    body = record_body(ihi, gateway, status="archived", record_id=record_id)
    outcome = await fhir.put(f"/fhir/Basic/{record_id}", json=body, headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 200
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    body["extension"][1]["valueCode"] = "active"
    shown = await fhir.put(f"/fhir/Basic/{record_id}", json=body, headers={"Prefer": "return=representation"})
    assert shown.json()["id"] == record_id
    assert shown.headers["preference-applied"] == "return=representation"


async def test_locate_by_post_answers_what_get_answers(fhir: httpx.AsyncClient, gateway: str) -> None:
    """$locate with a Parameters body (POST, FHIR's default for operations) finds what GET finds."""
    ihi = make_ihi()
    await _record(fhir, ihi, gateway)
    get = (await fhir.get("/fhir/Patient/$locate", params={"identifier": f"{IHI_SYSTEM}|{ihi}"})).json()
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "identifier", "valueIdentifier": {"system": IHI_SYSTEM, "value": ihi}}],
    }
    post = await fhir.post("/fhir/Patient/$locate", json=parameters)
    assert post.status_code == 200
    assert [e["resource"]["id"] for e in post.json()["entry"]] == [e["resource"]["id"] for e in get["entry"]]
    assert [e["resource"]["id"] for e in get["entry"]] == [gateway]


async def test_operation_post_refuses_what_is_not_parameters(fhir: httpx.AsyncClient) -> None:
    """POST to an operation takes a Parameters body: another resource is 422, not JSON 400, an unknown parameter
    ignored (or 400 when strict)."""
    assert (await fhir.post("/fhir/Patient/$locate", json={"resourceType": "Patient"})).status_code == 422
    assert (
        await fhir.post("/fhir/Patient/$locate", content=b"{", headers={"Content-Type": "application/fhir+json"})
    ).status_code == 400
    strange = {"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "blue"}]}
    strict = await fhir.post("/fhir/Patient/$locate", json=strange, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["colour"]


async def test_transaction_and_batch_are_405(fhir: httpx.AsyncClient) -> None:
    """POST to the FHIR base (a transaction or batch Bundle) is 405 with an OperationOutcome, not 404."""
    response = await fhir.post("/fhir", json={"resourceType": "Bundle", "type": "batch"})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_smart_configuration_under_the_fhir_base(anonymous: httpx.AsyncClient) -> None:
    """The SMART configuration is served under the FHIR base too (where SMART App Launch 2 clients look), the same
    document: token endpoint, permission-v2, and no non-https issuer."""
    root = (await anonymous.get("/.well-known/smart-configuration")).json()
    under = await anonymous.get("/fhir/.well-known/smart-configuration")
    assert under.status_code == 200
    assert under.headers["content-type"].startswith("application/json")
    assert under.json() == root
    assert root["token_endpoint"].endswith("/auth/token")
    assert {"permission-v2", "client-confidential-asymmetric"} <= set(root["capabilities"])
    assert "issuer" not in root  # the test server's issuer is a urn: (no public base URL)


async def test_capability_statement_declares_smart(anonymous: httpx.AsyncClient) -> None:
    """rest.security names SMART-on-FHIR and carries the token endpoint in the oauth-uris extension."""
    statement = (await anonymous.get("/fhir/metadata")).json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = next(
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    )
    token = next(e["valueUri"] for e in uris["extension"] if e["url"] == "token")
    assert token == str(anonymous.base_url).rstrip("/") + "/auth/token"


async def test_lenient_read_ignores_unknown_parameters(gateway_client: GatewayClient) -> None:
    """A read with a parameter it does not define is answered (lenient); strict, it is 400."""
    http = gateway_client.http
    created = await http.post("/fhir/Basic", json=record_body(make_ihi(), gateway_client.service_id))
    path = f"/fhir/Basic/{created.json()['id']}"
    assert (await http.get(path, params={"colour": "blue"})).status_code == 200
    strict = await http.get(path, params={"colour": "blue"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
