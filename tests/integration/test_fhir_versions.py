"""Versions of registry records over FHIR: vread, instance and type history, conditional create (If-None-Exist)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import extension, record_body
from tests.server import RunningServer


async def _write(http: httpx.AsyncClient, ihi: str, service_id: str, status: str = "active") -> dict[str, Any]:
    response = await http.post("/fhir/Basic", json=record_body(ihi, service_id, status=status))
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def _statuses(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["resource"]["meta"]["versionId"], extension(e["resource"], "registry-record-status")["valueCode"])
        for e in bundle.get("entry", [])
    ]


async def test_every_change_is_a_version(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Each status change makes a version: vread answers each as it was, with its ETag; the instance history
    lists them newest first, the first as its creation (POST, 201), the others as updates (PUT, 200)."""
    ihi = make_ihi()
    record = await _write(fhir, ihi, gateway)
    await _write(fhir, ihi, gateway, "removed")
    await _write(fhir, ihi, gateway, "removed")  # unchanged: no version
    await _write(fhir, ihi, gateway, "active")
    path = f"/fhir/Basic/{record['id']}"
    for version, status in (("1", "active"), ("2", "removed"), ("3", "active")):
        read = await fhir.get(f"{path}/_history/{version}")
        assert read.status_code == 200
        assert read.headers["etag"] == f'W/"{version}"'
        assert (read.json()["meta"]["versionId"], extension(read.json(), "registry-record-status")["valueCode"]) == (
            version,
            status,
        )
    history = (await fhir.get(f"{path}/_history")).json()
    assert history["type"] == "history"
    assert history["total"] == 3
    assert _statuses(history) == [("3", "active"), ("2", "removed"), ("1", "active")]
    requests = [(e["request"]["method"], e["response"]["status"]) for e in history["entry"]]
    assert requests == [("PUT", "200"), ("PUT", "200"), ("POST", "201")]
    assert history["entry"][0]["fullUrl"].endswith(path)


async def test_unknown_versions_and_records_are_404(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A version that never was, a record that does not exist, an id that is not one (digits of other scripts
    included): 404 with an OperationOutcome."""
    record = await _write(fhir, make_ihi(), gateway)
    path = f"/fhir/Basic/{record['id']}"
    other_digits = ("%C2%B9", "%D9%A1")  # superscript one, Arabic-Indic one: str.isdigit() takes both
    for missing in (
        f"{path}/_history/2",
        f"{path}/_history/x",
        *(f"{path}/_history/{digit}" for digit in other_digits),
        "/fhir/Basic/not-an-id/_history/1",
    ):
        response = await fhir.get(missing)
        assert response.status_code == 404, missing
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await fhir.get("/fhir/Basic/00000000-0000-4000-8000-000000000000/_history")).status_code == 404


async def test_history_is_paged_and_takes_since(fhir: httpx.AsyncClient, gateway: str) -> None:
    """_count pages the history (next link), _since leaves out older versions; a bad _since is 400."""
    ihi = make_ihi()
    record = await _write(fhir, ihi, gateway)
    for status in ("removed", "active", "archived"):
        await _write(fhir, ihi, gateway, status)
    path = f"/fhir/Basic/{record['id']}/_history"
    page = (await fhir.get(path, params={"_count": "2"})).json()
    assert _statuses(page) == [("4", "archived"), ("3", "active")]
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert _statuses((await fhir.get(following)).json()) == [("2", "removed"), ("1", "active")]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await fhir.get(path, params={"_since": future})).json()["total"] == 0
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await fhir.get(path, params={"_since": past})).json()["total"] == 4
    assert (await fhir.get(path, params={"_since": "last tuesday"})).status_code == 400
    assert (await fhir.get(path, params={"_since": "2024-05-01T10:00:00"})).status_code == 400  # no time zone


async def test_type_history_shows_a_caller_its_own_service_only(
    gateway_client: GatewayClient, fhir: httpx.AsyncClient, server: RunningServer
) -> None:
    """Basic/_history lists the versions of the caller's own service's records (every record for admin)."""
    other = make_service_id()
    await server.add_service(other)
    mine, theirs = make_ihi(), make_ihi()
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    await _write(gateway_client.http, mine, gateway_client.service_id)
    await _write(fhir, theirs, other)
    own = (await gateway_client.http.get("/fhir/Basic/_history", params={"_since": since})).json()
    subjects = {e["resource"]["subject"]["identifier"]["value"] for e in own.get("entry", [])}
    assert subjects == {mine}
    everything = (await fhir.get("/fhir/Basic/_history", params={"_since": since, "_count": "1000"})).json()
    assert {mine, theirs} <= {e["resource"]["subject"]["identifier"]["value"] for e in everything["entry"]}


async def test_conditional_create_follows_fhir_rules(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """If-None-Exist: no match creates (201); one match answers it (200) and writes nothing (no new version, even
    when the body asks for another status); more than one is 412; an unknown criterion is 400."""
    ihi = make_ihi()
    first, second = make_service_id(), make_service_id()
    await server.add_service(first)
    await server.add_service(second)
    condition = {"If-None-Exist": f"patient.identifier={IHI_SYSTEM}|{ihi}&service={first}"}
    created = await fhir.post("/fhir/Basic", json=record_body(ihi, first), headers=condition)
    assert created.status_code == 201
    again = await fhir.post("/fhir/Basic", json=record_body(ihi, first, status="removed"), headers=condition)
    assert again.status_code == 200
    assert again.json() == created.json()
    history = (await fhir.get(f"/fhir/Basic/{created.json()['id']}/_history")).json()
    assert history["total"] == 1
    await _write(fhir, ihi, second)
    both = await fhir.post("/fhir/Basic", json=record_body(ihi, first), headers={"If-None-Exist": f"patient={ihi}"})
    assert both.status_code == 412
    unknown = await fhir.post("/fhir/Basic", json=record_body(ihi, first), headers={"If-None-Exist": "colour=blue"})
    assert unknown.status_code == 400
    prefixed = {"If-None-Exist": f"Basic?patient={ihi}&service={second}"}
    assert (await fhir.post("/fhir/Basic", json=record_body(ihi, second), headers=prefixed)).status_code == 200


async def test_concurrent_conditional_creates_make_one_record(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Conditional creates of one record at once end in one record with one version (the natural key holds)."""
    ihi = make_ihi()
    condition = {"If-None-Exist": f"patient={ihi}&service={gateway}"}
    answers = await asyncio.gather(
        *(fhir.post("/fhir/Basic", json=record_body(ihi, gateway), headers=condition) for _ in range(8))
    )
    assert {a.status_code for a in answers} <= {200, 201}
    assert len({a.json()["id"] for a in answers}) == 1
    history = (await fhir.get(f"/fhir/Basic/{answers[0].json()['id']}/_history")).json()
    assert history["total"] == 1
