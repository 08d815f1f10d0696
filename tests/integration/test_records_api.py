"""The native registry API over real HTTP on a real PostgreSQL."""

from __future__ import annotations

import httpx

from tests.factories import make_ihi


async def test_put_creates_then_repeat_is_unchanged(client: httpx.AsyncClient, gateway: str) -> None:
    """A new record answers 201; the identical write again answers 200 with the same record."""
    ihi = make_ihi()
    first = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    assert first.status_code == 201
    again = await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["ihi"] == ihi
    assert first.json()["serviceId"] == gateway
