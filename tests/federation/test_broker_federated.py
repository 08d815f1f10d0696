"""The broker locates gateways through federation hops: a national registry refers to a state registry,
which holds the record of a gateway; a consumer's ImagingStudy search at the national registry reaches it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.config import Settings
from tests.broker.results import issues, new_uid, sources, uids
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.federation.network import Network, registries
from tests.gateway import reference_gateway
from tests.pg import TestCluster


@pytest.fixture(scope="module")
async def registries_of_the_module(template: TestCluster, settings: Settings) -> AsyncIterator[Network]:
    """A national and a state registry trusting each other, shared by the module's tests."""
    async with registries(template, [("national", settings), ("state", settings)]) as network:
        yield network


@pytest.fixture
async def net(registries_of_the_module: Network) -> AsyncIterator[Network]:
    """The two registries; after the test, every patient-linked request its clients made has one audit row."""
    yield registries_of_the_module
    await registries_of_the_module.check_audit()


async def test_a_gateway_known_through_a_referral_is_searched(net: Network, tmp_path: Path) -> None:
    """The national registry follows its referral to the state registry and searches the gateway held there."""
    ihi, uid = make_ihi(), new_uid()
    token = secrets.token_urlsafe(16)
    async with reference_gateway(token=token) as gateway:
        gateway.study(ihi, uid)
        service_id = make_service_id()
        token_file = tmp_path / "gateway.token"
        token_file.write_text(token + "\n", encoding="utf-8")
        # The gateway is a member of both registries; only the national broker has credentials for it.
        await net["state"].add_service(service_id, base_url=gateway.base_url)
        await net["national"].add_service(service_id, base_url=gateway.base_url, bearer_token_file=str(token_file))
        await net.put("state", ihi, service_id)
        await net.put("national", ihi, net["state"].service_id, type_="registry")
        async with net.client("national") as http:
            answer = await http.get("/fhir/ImagingStudy", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}"})
        assert gateway.searches == 1
        assert gateway.seen[0].authorization == f"Bearer {token}"
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert uids(bundle) == [uid]
    assert issues(bundle) == {}
    entry = next(e for e in bundle["entry"] if e["search"]["mode"] == "match")
    assert sources(entry) == [service_id]
    detail = await net["national"].count(
        "SELECT count(*) FROM audit_events WHERE detail LIKE '%referrals followed: 1 registries asked%' "
        "AND detail LIKE $1",
        f"%{service_id}: 1 found%",
    )
    assert detail == 1


async def test_a_gateway_without_credentials_here_is_skipped_and_reported(net: Network) -> None:
    """A gateway the referral leads to, with no credentials at this registry, is reported as skipped, not asked."""
    ihi = make_ihi()
    async with reference_gateway(token=secrets.token_urlsafe(16)) as gateway:
        gateway.study(ihi, new_uid())
        service_id = make_service_id()
        await net["state"].add_service(service_id, base_url=gateway.base_url)
        await net.put("state", ihi, service_id)
        await net.put("national", ihi, net["state"].service_id, type_="registry")
        async with net.client("national") as http:
            answer = await http.get("/fhir/ImagingStudy", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}"})
        assert gateway.searches == 0
    assert answer.status_code == 200
    assert issues(answer.json()) == {service_id: ["skipped"]}
