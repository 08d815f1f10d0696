"""The native registry API over real HTTP on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime

import asyncpg
import httpx
import pytest

from tests.factories import make_ihi, make_service_id, with_bad_check_digit
from tests.server import RunningServer


async def _count(server: RunningServer, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(server.database_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_put_creates_then_repeat_re_registers(client: httpx.AsyncClient, gateway: str) -> None:
    """A new record answers 201; the identical write again is a re-registration: 200, lastUpdated moved on."""
    ihi = make_ihi()
    first = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    assert first.status_code == 201
    again = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    assert again.status_code == 200
    assert {**again.json(), "lastUpdated": None} == {**first.json(), "lastUpdated": None}
    assert datetime.fromisoformat(again.json()["lastUpdated"]) > datetime.fromisoformat(first.json()["lastUpdated"])
    assert first.json() == {
        "ihi": ihi,
        "serviceId": gateway,
        "status": "active",
        "type": "record",
        "lastUpdated": first.json()["lastUpdated"],
    }


async def test_empty_body_defaults_to_active_record(client: httpx.AsyncClient, gateway: str) -> None:
    """An empty JSON object registers an active record of type record."""
    ihi = make_ihi()
    response = await client.put(f"/registry/records/{ihi}/{gateway}", json={})
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["type"]) == ("active", "record")


async def test_service_id_is_normalised(client: httpx.AsyncClient, server: RunningServer) -> None:
    """An upper-case UUID names the same service as its canonical lower-case form."""
    service_id = make_service_id()
    await server.add_service(service_id)
    ihi = make_ihi()
    response = await client.put(f"/registry/records/{ihi}/{service_id.upper()}", json={"status": "active"})
    assert response.status_code == 201
    assert response.json()["serviceId"] == service_id


async def test_ulid_service_ids_are_accepted(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A ULID service ID (lower case on input) is stored in upper case."""
    ulid = "01HZY3K5QW8X2V9T6R4M0N7P1S"
    await server.add_service(ulid)
    response = await client.put(f"/registry/records/{make_ihi()}/{ulid.lower()}", json={"status": "active"})
    assert response.status_code == 201
    assert response.json()["serviceId"] == ulid


async def test_status_change_updates_and_is_kept_in_history(client: httpx.AsyncClient, gateway: str) -> None:
    """Changing status answers 200, moves the record out of the default list, and appends history."""
    ihi = make_ihi()
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    changed = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "removed"})
    assert changed.status_code == 200
    assert changed.json()["status"] == "removed"
    listed = await client.get(f"/registry/records/{ihi}")
    assert listed.json() == {"ihi": ihi, "records": []}
    widened = await client.get(f"/registry/records/{ihi}", params=[("status", "removed"), ("status", "active")])
    assert [r["status"] for r in widened.json()["records"]] == ["removed"]
    history = (await client.get(f"/registry/records/{ihi}/history")).json()
    assert [(e["change"], e["status"], e.get("previousStatus")) for e in history["history"]] == [
        ("created", "active", None),
        ("status-changed", "removed", "active"),
    ]


async def test_list_returns_only_active_by_default(
    client: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """Of three records, the default list shows the active ones; `status` widens it (comma form too)."""
    ihi = make_ihi()
    archived, removed = make_service_id(), make_service_id()
    await server.add_service(archived, kind="registry")
    await server.add_service(removed)
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    await client.put(f"/registry/records/{ihi}/{archived}", json={"status": "archived", "type": "registry"})
    await client.put(f"/registry/records/{ihi}/{removed}", json={"status": "removed"})
    default = (await client.get(f"/registry/records/{ihi}")).json()
    assert [r["serviceId"] for r in default["records"]] == [gateway]
    every = (await client.get(f"/registry/records/{ihi}", params={"status": "active,removed,archived"})).json()
    assert sorted(r["serviceId"] for r in every["records"]) == sorted([gateway, archived, removed])
    assert {r["serviceId"]: r["type"] for r in every["records"]}[archived] == "registry"


async def test_look_up_names_each_services_directory_entry(client: httpx.AsyncClient, server: RunningServer) -> None:
    """Each record of a look-up carries its service's kind, name, base URL and search style from the directory."""
    ihi, service_id = make_ihi(), make_service_id()
    await server.add_service(service_id, name="Harbour PACS", base_url="https://harbour.example/fhir", style="harmony")
    await client.put(f"/registry/records/{ihi}/{service_id}", json={})
    [record] = (await client.get(f"/registry/records/{ihi}")).json()["records"]
    assert record["service"] == {
        "kind": "gateway",
        "name": "Harbour PACS",
        "baseUrl": "https://harbour.example/fhir",
        "searchStyle": "harmony",
    }


async def test_follow_with_nothing_to_follow_lists_own_records_with_empty_chains(
    client: httpx.AsyncClient, gateway: str
) -> None:
    """follow=true on a patient with no registry records: the own records, each via nothing, and nothing unresolved."""
    ihi = make_ihi()
    await client.put(f"/registry/records/{ihi}/{gateway}", json={})
    answer = (await client.get(f"/registry/records/{ihi}", params={"follow": "true"})).json()
    assert [(r["serviceId"], r["via"]) for r in answer["records"]] == [(gateway, [])]
    assert answer["unresolved"] == []


async def test_follow_takes_a_boolean(client: httpx.AsyncClient) -> None:
    """follow=maybe is a well-formed request with an invalid value: 422."""
    response = await client.get(f"/registry/records/{make_ihi()}", params={"follow": "maybe"})
    assert response.status_code == 422
    assert "follow" in response.text


async def test_unknown_ihi_lists_nothing(client: httpx.AsyncClient) -> None:
    """A valid IHI with no records answers 200 with an empty list, not 404."""
    ihi = make_ihi()
    response = await client.get(f"/registry/records/{ihi}")
    assert response.status_code == 200
    assert response.json() == {"ihi": ihi, "records": []}


async def test_concurrent_identical_puts_create_one_record(
    clients: Callable[..., httpx.AsyncClient], server: RunningServer, gateway: str
) -> None:
    """200 concurrent identical PUTs: exactly one 201 and one record; every PUT is a registration in history."""
    ihi = make_ihi()
    limits = httpx.Limits(max_connections=200)
    async with clients(limits=limits, timeout=60) as wide:
        responses = await asyncio.gather(
            *(wide.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"}) for _ in range(200))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1
    assert codes.count(200) == 199
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 1
    changes = await server.count(
        "SELECT count(*) FILTER (WHERE change = 'created') * 1000 + count(*) FROM record_history WHERE ihi = $1", ihi
    )
    assert changes == 1000 + 200


async def test_concurrent_status_changes_never_lose_history(
    client: httpx.AsyncClient, clients: Callable[..., httpx.AsyncClient], server: RunningServer, gateway: str
) -> None:
    """Concurrent alternating status changes: every applied change has its history entry, in order."""
    ihi = make_ihi()
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    statuses = ["removed", "active", "archived", "active"] * 25
    async with clients(limits=httpx.Limits(max_connections=100)) as wide:
        responses = await asyncio.gather(
            *(wide.put(f"/registry/records/{ihi}/{gateway}", json={"status": s}) for s in statuses)
        )
    assert all(r.status_code == 200 for r in responses)
    version = await _count(server, "SELECT version FROM records WHERE ihi = $1", ihi)
    history = (await client.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert len(history) == version
    for before, after in itertools.pairwise(history):
        assert after["previousStatus"] == before["status"]
        assert (after["status"] == before["status"]) == (after["change"] == "registered")
    final = (await client.get(f"/registry/records/{ihi}", params={"status": "active,removed,archived"})).json()
    assert final["records"][0]["status"] == history[-1]["status"]


@pytest.mark.parametrize(
    ("ihi", "reason"),
    [
        ("800360816669050", "16 decimal digits"),
        ("80036081666905031", "16 decimal digits"),
        ("80036081666905AB", "16 decimal digits"),
        ("8003518166690503", "starts with 800360"),
        ("WRONG_CHECK", "check digit"),
    ],
)
async def test_invalid_ihi_is_refused_with_422(client: httpx.AsyncClient, gateway: str, ihi: str, reason: str) -> None:
    """IHIs of the wrong length, with letters, with a wrong prefix or a bad check digit get 422 and store nothing."""
    if ihi == "WRONG_CHECK":
        ihi = with_bad_check_digit(make_ihi())
    response = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert reason in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"] == ["ihi"]
    listed = await client.get(f"/registry/records/{ihi}")
    assert listed.status_code == 422


@pytest.mark.parametrize(
    ("body", "expression"),
    [({"status": "deleted"}, "status"), ({"type": "pointer"}, "type"), ({"status": "active", "extra": 1}, None)],
)
async def test_invalid_body_is_refused_with_422(
    client: httpx.AsyncClient, server: RunningServer, gateway: str, body: dict[str, object], expression: str | None
) -> None:
    """Unknown status, unknown type or unknown field: 422 with the field named, and nothing stored."""
    ihi = make_ihi()
    response = await client.put(f"/registry/records/{ihi}/{gateway}", json=body)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "invalid"
    if expression:
        assert issue["expression"] == [expression]
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0


async def test_unknown_and_disabled_services_are_refused(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A record naming an unknown service, or a disabled one, gets 422 and nothing is stored."""
    ihi = make_ihi()
    unknown = await client.put(f"/registry/records/{ihi}/{make_service_id()}", json={"status": "active"})
    assert unknown.status_code == 422
    assert "not known or not enabled" in unknown.json()["issue"][0]["diagnostics"]
    disabled = make_service_id()
    await server.add_service(disabled, status="disabled")
    refused = await client.put(f"/registry/records/{ihi}/{disabled}", json={"status": "active"})
    assert refused.status_code == 422
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0


async def test_bad_service_id_is_refused(client: httpx.AsyncClient) -> None:
    """A service ID that is neither a UUID nor a ULID gets 422 naming serviceId."""
    response = await client.put(f"/registry/records/{make_ihi()}/not-a-service", json={"status": "active"})
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["serviceId"]


async def test_malformed_json_is_400(client: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """A body that is not JSON gets 400 with an OperationOutcome, and nothing is stored."""
    ihi = make_ihi()
    response = await client.put(
        f"/registry/records/{ihi}/{gateway}", content=b'{"status": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
async def test_wrong_media_type_is_415(
    client: httpx.AsyncClient, server: RunningServer, gateway: str, content_type: str | None
) -> None:
    """A body sent as text, XML or with no content type gets 415 and nothing is stored."""
    ihi = make_ihi()
    headers = {"content-type": content_type} if content_type else {}
    response = await client.put(f"/registry/records/{ihi}/{gateway}", content=b'{"status":"active"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0


async def test_body_over_limit_is_413(client: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """A body larger than the limit gets 413 with an OperationOutcome and nothing is stored."""
    ihi = make_ihi()
    big = b'{"status": "active", "pad": "' + b"x" * (server.settings.http.max_body_bytes + 10) + b'"}'
    response = await client.put(
        f"/registry/records/{ihi}/{gateway}", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await _count(server, "SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0


async def test_unknown_query_parameter_is_400(client: httpx.AsyncClient) -> None:
    """A query parameter the route does not define gets 400 naming it."""
    response = await client.get(f"/registry/records/{make_ihi()}", params={"colour": "blue"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["colour"]


async def test_too_many_query_values_is_400(client: httpx.AsyncClient, server: RunningServer) -> None:
    """More repeated query values than the limit gets 400."""
    many: list[tuple[str, str | int | float | bool | None]] = [("status", "active")] * (
        server.settings.http.max_query_params + 1
    )
    response = await client.get(f"/registry/records/{make_ihi()}", params=many)
    assert response.status_code == 400
    assert "too many" in response.json()["issue"][0]["diagnostics"]


async def test_query_limit_counts_values_not_characters(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A few long query values are within the limit however many characters they hold."""
    statuses = ",".join(["active", "removed", "archived"] * 10)
    assert len(statuses) > server.settings.http.max_query_params
    response = await client.get(f"/registry/records/{make_ihi()}", params={"status": statuses})
    assert response.status_code == 200


async def test_unknown_status_filter_is_422(client: httpx.AsyncClient) -> None:
    """Asking for a status that does not exist gets 422."""
    response = await client.get(f"/registry/records/{make_ihi()}", params={"status": "deleted"})
    assert response.status_code == 422


async def test_unknown_route_is_404_outcome(client: httpx.AsyncClient) -> None:
    """An unknown path gets a 404 OperationOutcome, never HTML."""
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_wrong_method_is_405_outcome(client: httpx.AsyncClient) -> None:
    """DELETE on a record path gets 405 (records are never deleted) as an OperationOutcome."""
    response = await client.delete(f"/registry/records/{make_ihi()}")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_request_id_is_returned_and_echoed(client: httpx.AsyncClient) -> None:
    """Every response carries X-Request-Id; a caller's own safe ID is echoed back."""
    fresh = await client.get("/health/live")
    assert len(fresh.headers["x-request-id"]) == 32
    echoed = await client.get("/health/live", headers={"X-Request-Id": "peer-abc.123"})
    assert echoed.headers["x-request-id"] == "peer-abc.123"
    unsafe = await client.get("/health/live", headers={"X-Request-Id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_records_cannot_be_deleted_in_sql(server: RunningServer, client: httpx.AsyncClient, gateway: str) -> None:
    """Even direct SQL cannot delete a record or rewrite history: nothing is hard-deleted."""
    ihi = make_ihi()
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    conn = await asyncpg.connect(server.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM records WHERE ihi = $1", ihi)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE record_history SET status = 'removed' WHERE ihi = $1", ihi)
    finally:
        await conn.close()
