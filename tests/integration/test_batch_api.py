"""The bulk registration endpoint: JSON arrays and NDJSON, per-item results, limits."""

from __future__ import annotations

import asyncpg
import httpx
import msgspec

from tests.factories import make_ihi, make_service_id, with_bad_check_digit
from tests.server import RunningServer

URL = "/registry/records:batch"


async def test_batch_array_reports_each_item_in_order(client: httpx.AsyncClient, gateway: str) -> None:
    """A JSON array batch answers one result per item in request order, with invalid items reported."""
    good, other, bad = make_ihi(), make_ihi(), with_bad_check_digit(make_ihi())
    await client.put(f"/registry/records/{other}/{gateway}", json={"status": "active"})
    items = [
        {"ihi": good, "serviceId": gateway, "status": "active"},
        {"ihi": bad, "serviceId": gateway},
        {"ihi": other, "serviceId": gateway, "status": "active"},
        {"ihi": other, "serviceId": gateway.upper(), "status": "archived"},
        {"ihi": good, "serviceId": make_service_id()},
        {"ihi": good, "serviceId": gateway, "status": "frozen"},
    ]
    response = await client.post(URL, json=items)
    assert response.status_code == 200
    body = response.json()
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert [r["result"] for r in body["results"]] == ["created", "error", "error", "updated", "error", "error"]
    assert "check digit" in body["results"][1]["error"]
    assert "superseded by item 3" in body["results"][2]["error"]
    assert body["results"][3]["status"] == "archived"
    assert "not known or not enabled" in body["results"][4]["error"]
    assert (body["created"], body["updated"], body["unchanged"], body["errors"]) == (1, 1, 0, 4)
    history = (await client.get(f"/registry/records/{other}/history")).json()["history"]
    assert [e["status"] for e in history] == ["active", "archived"]


async def test_batch_repeat_re_registers(client: httpx.AsyncClient, gateway: str) -> None:
    """Sending the same batch twice creates nothing the second time: each item is a re-registration."""
    items = [{"ihi": make_ihi(), "serviceId": gateway} for _ in range(50)]
    first = (await client.post(URL, json=items)).json()
    second = (await client.post(URL, json=items)).json()
    assert first["created"] == 50
    assert (second["created"], second["registered"], second["updated"], second["unchanged"]) == (0, 50, 0, 0)
    assert all(r["lastUpdated"] for r in second["results"])


async def test_batch_ndjson_with_a_bad_line(client: httpx.AsyncClient, gateway: str) -> None:
    """NDJSON lines are items; a line that is not JSON is an item error, the rest are applied."""
    ihis = [make_ihi(), make_ihi()]
    lines = [
        msgspec.json.encode({"ihi": ihis[0], "serviceId": gateway}),
        b"{not json",
        msgspec.json.encode({"ihi": ihis[1], "serviceId": gateway, "status": "removed"}),
    ]
    body = b"\n".join(lines) + b"\n"
    response = await client.post(URL, content=body, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 200
    assert [r["result"] for r in response.json()["results"]] == ["created", "error", "created"]
    listed = (await client.get(f"/registry/records/{ihis[1]}", params={"status": "removed"})).json()
    assert listed["records"][0]["status"] == "removed"


async def test_a_large_batch_is_applied_completely(client: httpx.AsyncClient, gateway: str) -> None:
    """A batch of thousands of items is applied completely (staged with COPY, merged in one statement)."""
    count = 2007
    items = [{"ihi": make_ihi(), "serviceId": gateway} for _ in range(count)]
    body = (await client.post(URL, json=items)).json()
    assert body["created"] + body["errors"] == count
    assert body["created"] >= count - 2  # random IHIs may collide, reported as superseded


async def test_batch_over_item_limit_is_413(client: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """A batch of more than 10,000 items gets 413 and none of it is applied."""
    limit = server.settings.records.batch_max_items
    ihi = make_ihi()
    items = [{"ihi": ihi, "serviceId": gateway}] + [{"ihi": "x", "serviceId": gateway}] * limit
    response = await client.post(URL, json=items)
    assert response.status_code == 413
    assert str(limit) in response.json()["issue"][0]["diagnostics"]
    conn = await asyncpg.connect(server.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM records WHERE ihi = $1", ihi) == 0
    finally:
        await conn.close()


async def test_batch_malformed_and_wrong_shape(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is 400; JSON that is not an array is 422; a wrong media type is 415."""
    malformed = await client.post(URL, content=b"[{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    not_array = await client.post(URL, json={"ihi": make_ihi()})
    assert not_array.status_code == 422
    wrong_type = await client.post(URL, content=b"[]", headers={"content-type": "text/csv"})
    assert wrong_type.status_code == 415
