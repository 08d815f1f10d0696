"""Identical concurrent searches share one fan-out: a UI storm does not become a storm at the gateways."""

from __future__ import annotations

import asyncio

from tests.broker.conftest import Broker, gateway_token
from tests.broker.results import issues, new_uid, uids
from tests.factories import make_ihi
from tests.gateway import reference_gateway


async def test_fifty_identical_searches_ask_each_gateway_once(broker: Broker) -> None:
    """50 concurrent identical searches cause one request per gateway, and all 50 get the merged result."""
    ihi = make_ihi()
    async with (
        reference_gateway(token=gateway_token()) as a,
        reference_gateway(token=gateway_token()) as b,
        reference_gateway(token=gateway_token()) as c,
    ):
        shared, older = new_uid(), new_uid()
        a.study(ihi, shared)
        b.study(ihi, older, started="2023")
        c.study(ihi, shared)
        for gateway in (a, b, c):
            gateway.behaviour.delay = 0.5  # every search arrives while the first fan-out is out
            await broker.join(gateway, ihi)
        responses = await asyncio.gather(*(broker.search(ihi, modality="CT") for _ in range(50)))
        counts = (a.searches, b.searches, c.searches)
    assert [r.status_code for r in responses] == [200] * 50
    assert {tuple(uids(r.json())) for r in responses} == {(shared, older)}
    assert all(issues(r.json()) == {} for r in responses)
    assert counts == (1, 1, 1)


async def test_different_searches_do_not_share(broker: Broker) -> None:
    """Searches that differ in a filter each ask the gateway; the same search after the first ended asks again."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as gateway:
        gateway.study(ihi, new_uid())
        gateway.behaviour.delay = 0.2
        await broker.join(gateway, ihi)
        await asyncio.gather(broker.search(ihi, modality="CT"), broker.search(ihi, modality="MR"))
        await broker.search(ihi, modality="CT")
    assert gateway.searches == 3
