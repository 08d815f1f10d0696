"""What the FHIR facade refuses, and how: the right status, one issue per problem, an expression."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from tests.factories import IHI_SYSTEM, make_ihi, make_service_id, with_bad_check_digit
from tests.fhir import BASE, fixture, record_body
from tests.server import RunningServer


def _issues(response: httpx.Response) -> list[tuple[str, list[str] | None]]:
    return [(issue["code"], issue.get("expression")) for issue in response.json()["issue"]]


async def test_every_problem_of_a_body_is_one_issue(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """A body with several problems is 422 with one issue for each, each naming where, and nothing is stored."""
    body = fixture("Basic-RegistryRecord-invalid.json", service_id=gateway)
    response = await fhir.post("/fhir/Basic", json=body)
    assert response.status_code == 422
    assert _issues(response) == [
        ("invalid", ["Basic.author"]),
        ("invalid", ["Basic.subject.identifier.value"]),
        ("invalid", ["Basic.extension[1].valueCode"]),
        ("invalid", ["Basic.extension[2].valueCode"]),
        ("invalid", ["Basic.extension[3].url"]),
    ]
    diagnostics = " | ".join(issue["diagnostics"] for issue in response.json()["issue"])
    assert "check digit" in diagnostics
    assert "'deleted'" in diagnostics
    assert "'pointer'" in diagnostics
    assert "https://example.org/fhir/StructureDefinition/colour" in diagnostics
    assert await server.record_count("8003608166690504") == 0


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda b: b["subject"]["identifier"].update(value="8003608166690"), "Basic.subject.identifier.value"),
        (lambda b: b["subject"]["identifier"].update(system="urn:oid:1.2.36.1"), "Basic.subject.identifier.system"),
        (lambda b: b["subject"].update(reference="Patient/123"), "Basic.subject.reference"),
        (lambda b: b.pop("subject"), "Basic.subject.identifier"),
        (lambda b: b["extension"][1].update(valueCode="deleted"), "Basic.extension[1].valueCode"),
        (lambda b: b["extension"][2].update(valueCode="pointer"), "Basic.extension[2].valueCode"),
        (
            lambda b: b["extension"][1].pop("valueCode") and b["extension"][1].update(valueString="active"),
            "Basic.extension[1]",
        ),
        (lambda b: b["extension"][1].update(valueCode=7), "Basic.extension[1].valueCode"),
        (lambda b: b["extension"].append(dict(b["extension"][1])), "Basic.extension[3]"),
        (lambda b: b["extension"].pop(0), "Basic.extension"),
        (
            lambda b: b["extension"][0]["valueIdentifier"].update(value="gw-1"),
            "Basic.extension[0].valueIdentifier.value",
        ),
        (
            lambda b: b["extension"][0]["valueIdentifier"].update(system="urn:x"),
            "Basic.extension[0].valueIdentifier.system",
        ),
        (lambda b: b["code"]["coding"][0].update(code="other"), "Basic.code"),
        (lambda b: b["meta"].update(profile=[f"{BASE}/StructureDefinition/Other"]), "Basic.meta.profile"),
        (lambda b: b.update(modifierExtension=[{"url": "urn:x", "valueBoolean": True}]), "Basic.modifierExtension"),
        (lambda b: b.update(created="2024-01-01"), "Basic.created"),
        (lambda b: b.update(colour="blue"), "Basic.colour"),
    ],
    ids=[
        "short-ihi",
        "foreign-ihi-system",
        "subject-reference",
        "no-subject",
        "unknown-status",
        "unknown-type",
        "status-as-string",
        "status-not-a-string",
        "repeated-extension",
        "no-service",
        "bad-service-id",
        "foreign-service-system",
        "wrong-code",
        "other-profile",
        "modifier-extension",
        "created",
        "unknown-element",
    ],
)
async def test_invalid_record_bodies_are_422(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str, change: object, expression: str
) -> None:
    """Each invalid RegistryRecord is 422 with an issue naming the offending element, and nothing is stored."""
    ihi = make_ihi()
    body = record_body(ihi, gateway)
    change(body)  # type: ignore[operator]
    response = await fhir.post("/fhir/Basic", json=body)
    assert response.status_code == 422, response.text
    assert [expression] in [issue.get("expression") for issue in response.json()["issue"]]
    assert await server.record_count(ihi) == 0


async def test_bad_ihi_check_digit_is_422(fhir: httpx.AsyncClient, gateway: str) -> None:
    """An IHI with a wrong Luhn check digit in the subject is 422 naming the subject identifier."""
    response = await fhir.post("/fhir/Basic", json=record_body(with_bad_check_digit(make_ihi()), gateway))
    assert response.status_code == 422
    assert _issues(response) == [("invalid", ["Basic.subject.identifier.value"])]


async def test_unknown_and_disabled_services_are_422(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """A record naming a service the directory does not have, or a disabled one, is 422 and not stored."""
    ihi = make_ihi()
    unknown = await fhir.post("/fhir/Basic", json=record_body(ihi, make_service_id()))
    disabled = make_service_id()
    await server.add_service(disabled, status="disabled")
    refused = await fhir.post("/fhir/Basic", json=record_body(ihi, disabled))
    assert (unknown.status_code, refused.status_code) == (422, 422)
    assert "not known or not enabled" in unknown.json()["issue"][0]["diagnostics"]
    assert await server.record_count(ihi) == 0


async def test_wrong_resource_type_is_422(fhir: httpx.AsyncClient) -> None:
    """A Patient posted to Basic is 422 naming resourceType."""
    response = await fhir.post("/fhir/Basic", json=fixture("Patient.json"))
    assert response.status_code == 422
    assert _issues(response) == [("invalid", ["resourceType"])]
    assert "expected a Basic resource, got Patient" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("body", [b"[]", b'"Basic"', b"{}"], ids=["array", "string", "no-resource-type"])
async def test_json_that_is_not_a_resource_is_422(fhir: httpx.AsyncClient, body: bytes) -> None:
    """JSON that is not a resource object is 422."""
    response = await fhir.post("/fhir/Basic", content=body, headers={"content-type": "application/fhir+json"})
    assert response.status_code == 422


async def test_malformed_json_is_400(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A body that is not JSON is 400 (structure), on create and on update alike."""
    post = await fhir.post(
        "/fhir/Basic", content=b'{"resourceType": "Basic",', headers={"content-type": "application/fhir+json"}
    )
    put = await fhir.put(
        f"/fhir/Basic?patient={make_ihi()}&service={gateway}",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert (post.status_code, put.status_code) == (400, 400)
    assert _issues(post) == [("structure", None)]


@pytest.mark.parametrize("content_type", ["text/plain", "application/fhir+xml", None])
async def test_wrong_media_type_is_415(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str, content_type: str | None
) -> None:
    """A body sent as text, FHIR XML or with no content type is 415 and nothing is stored."""
    ihi = make_ihi()
    headers = {"content-type": content_type} if content_type else {}
    content = msgspec.json.encode(record_body(ihi, gateway))
    response = await fhir.post("/fhir/Basic", content=content, headers=headers)
    assert response.status_code == 415
    assert _issues(response) == [("not-supported", None)]
    assert await server.record_count(ihi) == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/fhir+json; fhirVersion=4.0"])
async def test_json_media_types_are_accepted(fhir: httpx.AsyncClient, gateway: str, content_type: str) -> None:
    """application/json and application/fhir+json (with parameters) are both accepted."""
    content = msgspec.json.encode(record_body(make_ihi(), gateway))
    response = await fhir.post("/fhir/Basic", content=content, headers={"content-type": content_type})
    assert response.status_code == 201


async def test_body_over_the_limit_is_413(fhir: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """A body larger than the limit is 413 with an OperationOutcome, and nothing is stored."""
    ihi = make_ihi()
    body = record_body(ihi, gateway)
    body["text"] = {"status": "generated", "div": "<div>" + "x" * server.settings.http.max_body_bytes + "</div>"}
    response = await fhir.post(
        "/fhir/Basic", content=msgspec.json.encode(body), headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 413
    assert _issues(response) == [("too-costly", None)]
    assert await server.record_count(ihi) == 0


_UNKNOWN = [
    ("/fhir/Basic", {"patient": "IHI", "colour": "blue"}),
    ("/fhir/Basic", {"patient": "IHI", "_sort": "-_lastUpdated"}),
    ("/fhir/Basic", {"patient": "IHI", "patient:missing": "true"}),
    ("/fhir/Endpoint", {"address": "https://x"}),
    ("/fhir/metadata", {"mode": "full"}),
    ("/fhir/StructureDefinition", {"name": "RegistryRecord"}),
    ("/fhir/Basic/ID", {"_sort": "x"}),
]


@pytest.mark.parametrize(("path", "params"), _UNKNOWN)
async def test_unknown_parameters_are_400_when_strict(
    fhir: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    """With ``Prefer: handling=strict`` a query parameter the route does not define is 400 naming it."""
    ihi = make_ihi()
    query = {name: value.replace("IHI", ihi) for name, value in params.items()}
    response = await fhir.get(
        path.replace("ID", "00000000-0000-4000-8000-000000000000"), params=query, headers={"Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    unknown = next(name for name in params if name not in ("patient",))
    assert response.json()["issue"][0]["expression"] == [unknown]


@pytest.mark.parametrize(("path", "params"), [(p, q) for p, q in _UNKNOWN if "ID" not in p])
async def test_unknown_parameters_are_ignored_and_reported_by_default(
    fhir: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    """Without a handling preference (FHIR's default: lenient) an unknown parameter is ignored: a search Bundle
    says so in its OperationOutcome entry, naming it, and its self link leaves it out."""
    ihi = make_ihi()
    query = {name: value.replace("IHI", ihi) for name, value in params.items()}
    response = await fhir.get(path, params=query, headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    unknown = next(name for name in params if name not in ("patient",))
    body = response.json()
    if body["resourceType"] == "Bundle":
        outcome = next(e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome")
        assert [i["expression"] for i in outcome["issue"]] == [[unknown]]
        assert outcome["issue"][0]["severity"] == "warning"
        assert unknown not in next(link["url"] for link in body["link"] if link["relation"] == "self")


async def test_conditional_update_refuses_search_only_parameters(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A conditional update takes only the natural-key parameters: status or _count there is 400 (a conditional
    write is strict: ignoring a criterion could write another record than the one meant)."""
    ihi = make_ihi()
    response = await fhir.put(
        "/fhir/Basic", params={"patient": ihi, "service": gateway, "status": "active"}, json=record_body(ihi, gateway)
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["status"]


@pytest.mark.parametrize("count", ["ten", "-1", "1.5", "", "9999999999"])
async def test_bad_count_is_400(fhir: httpx.AsyncClient, count: str) -> None:
    """A _count that is not a whole number 0 or more (or too long to be one) is 400 naming _count."""
    response = await fhir.get("/fhir/Basic", params={"patient": make_ihi(), "_count": count})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_count"]


async def test_repeated_count_is_400(fhir: httpx.AsyncClient) -> None:
    """_count given twice is 400."""
    response = await fhir.get("/fhir/Endpoint", params=[("_count", "1"), ("_count", "2")])
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"subject:identifier": f"{IHI_SYSTEM}|8003608166690504"}, "subject:identifier"),
        ({"subject:identifier": "urn:oid:1.2.36.146.595.217.0.1|8003608166690503"}, "subject:identifier"),
        ({"patient": "Patient/123"}, "patient"),
        ({"patient.identifier": "8003"}, "patient.identifier"),
        ({"patient": "8003608166690503", "status": "deleted"}, "status"),
        ({"patient": "8003608166690503", "status": "urn:other|active"}, "status"),
        ({"service": "gateway-one"}, "service"),
        ({"service": "urn:other|0f8fad5b-d9cb-469f-a165-70867728950e"}, "service"),
    ],
)
async def test_invalid_search_values_are_422(fhir: httpx.AsyncClient, params: dict[str, str], expression: str) -> None:
    """A search value that can never be valid (bad IHI, foreign system, unknown status) is 422 naming the parameter."""
    response = await fhir.get("/fhir/Basic", params=params)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [expression]


@pytest.mark.parametrize("value", ["xml", "application/fhir+xml", "turtle", "html"])
async def test_non_json_format_is_406(fhir: httpx.AsyncClient, value: str) -> None:
    """_format asking for anything but JSON is 406 naming _format."""
    response = await fhir.get("/fhir/metadata", params={"_format": value})
    assert response.status_code == 406
    assert _issues(response) == [("not-supported", ["_format"])]


@pytest.mark.parametrize("value", ["json", "application/json", "application/fhir+json", "application/fhir json"])
async def test_json_format_is_served(fhir: httpx.AsyncClient, value: str) -> None:
    """_format=json (and its MIME spellings, an unencoded + included) is accepted on every FHIR route."""
    response = await fhir.get("/fhir/metadata", params={"_format": value})
    assert response.status_code == 200


async def test_unknown_fhir_route_is_404(fhir: httpx.AsyncClient) -> None:
    """A resource type the facade does not serve is a 404 OperationOutcome."""
    response = await fhir.get("/fhir/Patient/8003608166690503")
    assert response.status_code == 404
    assert _issues(response) == [("not-found", None)]


async def test_long_query_values_are_not_counted_as_many(client: httpx.AsyncClient) -> None:
    """The query-value limit counts values, not characters: one long value is accepted (native API too)."""
    long_status = ",".join(["active"] * 20)
    response = await client.get(f"/registry/records/{make_ihi()}", params={"status": long_status})
    assert response.status_code == 200
