"""Connections to gateways: kept alive and reused between searches, and replaced when a gateway closes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.broker.conftest import Broker, gateway_token
from tests.broker.results import issues, new_uid, uids
from tests.factories import make_ihi
from tests.gateway import ReferenceGateway
from tests.server import serving


@contextlib.asynccontextmanager
async def watched_gateway(*, close: bool) -> AsyncIterator[tuple[ReferenceGateway, list[int]]]:
    """A reference gateway that notes the client port of every request (and, with ``close``, answers with
    ``Connection: close``)."""
    gateway = ReferenceGateway(token=gateway_token())
    ports: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ports.append(scope["client"][1])

        async def closing(message: dict[str, Any]) -> None:
            if close and message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            await send(message)

        await gateway(scope, receive, closing)

    async with serving(app, port=None, lifespan="off") as origin:
        gateway.base_url = f"{origin}/fhir"
        yield gateway, ports


async def test_connections_are_reused_and_replaced_when_closed(broker: Broker) -> None:
    """Four searches in a row reach a keep-alive gateway over one connection, and a gateway that closes
    every connection after answering over four, every search answered in full."""
    ihi = make_ihi()
    kept_uid, closed_uid = new_uid(), new_uid()
    async with watched_gateway(close=False) as (kept, kept_ports), watched_gateway(close=True) as (closing, ports):
        kept.study(ihi, kept_uid)
        closing.study(ihi, closed_uid)
        await broker.join(kept, ihi)
        await broker.join(closing, ihi)
        bundles = []
        for _ in range(4):
            bundles.append((await broker.search(ihi)).json())
            await asyncio.sleep(0.05)  # the gateway's close reaches the broker before the next search
    assert all(sorted(uids(bundle)) == sorted([kept_uid, closed_uid]) for bundle in bundles)
    assert all(issues(bundle) == {} for bundle in bundles)
    assert len(kept_ports) == 4
    assert len(set(kept_ports)) == 1
    assert len(ports) == len(set(ports)) == 4
