"""Upstream publication (DESIGN §11): a jurisdiction keeps `registry` records naming itself at a national registry."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from registry.config import Settings
from registry.config.outbound import FederationSettings
from tests.cli import CliResult, run_cli
from tests.factories import LOOPBACK_NETWORKS, make_ihi
from tests.federation.network import Network, directory, registries
from tests.pg import TestCluster

PUBLISH = "system/Basic.rs system/Basic.cu"


@contextlib.asynccontextmanager
async def national_and_state(template: TestCluster, settings: Settings, *, publisher: bool) -> AsyncIterator[Network]:
    """A national registry and a jurisdiction's (state), trusting each other; the national one admits the state
    as a client bound to the state's service ID with system/Basic.cu, and the state publishes to it."""
    state_settings = msgspec.structs.replace(
        settings, federation=FederationSettings(publisher=publisher, publish_poll_interval=0.05)
    )
    async with registries(template, [("national", settings), ("state", state_settings)]) as net:
        await publish(net)
        yield net


async def publish(net: Network) -> CliResult:
    """Admit the state at the national registry for publication, as operators would, and run `federation publish`."""
    national, state = net["national"], net["state"]
    client_id, _ = await national.add_client(
        state.service_id, PUBLISH, name="State registry", jwks_url=f"{state.base_url}/.well-known/jwks.json"
    )
    await directory(state).add(
        service_id=national.service_id, kind="registry", name="National", base_url=national.base_url,
        client_id=client_id,
    )  # fmt: skip
    published = await run_cli(state, "federation", "publish", "--to", national.service_id)
    assert published.code == 0, published.err
    return published


async def _found_at_national(net: Network, ihi: str, gateway: str) -> bool:
    async with net.client("national") as http:
        answer = (await http.get(f"/registry/records/{ihi}", params={"follow": "true"})).json()
    return gateway in [r["serviceId"] for r in answer["records"]]


async def test_a_registration_at_the_jurisdiction_is_found_nationally_within_2_s(
    template: TestCluster, settings: Settings
) -> None:
    """After `federation publish`, a registration at the state makes the national follow=true find its gateway
    within 2 s; when the last active record of the IHI goes, the referral at the national registry is archived."""
    earlier, ihi = make_ihi(), make_ihi()
    async with national_and_state(template, settings, publisher=True) as net:
        gateway = await net.gateway("state", "Coast")
        await net.put("state", earlier, gateway)
        started = time.monotonic()
        await net.put("state", ihi, gateway)
        while not await _found_at_national(net, ihi, gateway):
            assert time.monotonic() - started < 2.0, "not found at the national registry within 2 s"
            await asyncio.sleep(0.05)
        await net.put("state", ihi, gateway, status="removed")
        national = net["national"]
        status = 0
        for _ in range(100):
            status = await national.count(
                "SELECT count(*) FROM records WHERE ihi = $1 AND service_id = $2 AND status = 'archived'",
                ihi, net["state"].service_id,
            )  # fmt: skip
            if status:
                break
            await asyncio.sleep(0.05)
        assert status == 1
        assert await _found_at_national(net, earlier, gateway)
        await net.check_audit()


async def test_backfill_publishes_the_ihis_already_here(template: TestCluster, settings: Settings) -> None:
    """IHIs with active records before `federation publish` are published by its backfill (with its summary line)."""
    state_settings = msgspec.structs.replace(settings, federation=FederationSettings(publish_poll_interval=0.05))
    async with registries(template, [("national", settings), ("state", state_settings)]) as net:
        national, state = net["national"], net["state"]
        gateway = await net.gateway("state", "Hills")
        before = [make_ihi() for _ in range(20)]
        for ihi in before:
            await net.put("state", ihi, gateway)
        published = await publish(net)
        assert "20 records" in published.last_line
        count = 0
        for _ in range(200):
            count = await national.count(
                "SELECT count(*) FROM records WHERE service_id = $1 AND status = 'active'", state.service_id
            )
            if count == 20:
                break
            await asyncio.sleep(0.05)
        assert count == 20
        await net.check_audit()


@pytest.mark.slow
async def test_sigkill_of_the_jurisdictions_worker_loses_no_publication(
    template: TestCluster, settings: Settings
) -> None:
    """The state's publisher runs in a separate `ief-registry worker`, SIGKILLed while 300 registrations are being
    published: after a restart the national registry holds a referral for every one of them."""
    total = 300
    async with national_and_state(template, settings, publisher=False) as net:
        national, state = net["national"], net["state"]
        gateway = await net.gateway("state", "Plains")
        env = {
            **os.environ, "IEF_DATABASE_URL": state.database_url, "IEF_SERVICE_ID": state.service_id,
            "IEF_LOG_LEVEL": "warning", "IEF_FEDERATION_PUBLISH_BATCH": "10",
            "IEF_FEDERATION_PUBLISH_POLL_INTERVAL": "0.05", "IEF_SUBSCRIPTIONS_WORKER_CONCURRENCY": "1",
            "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,  # the national registry runs on loopback
            "IEF_FEDERATION_PUBLISH_TIMEOUT": "2",  # the killed worker's lease ends 9 s later
        }  # fmt: skip

        async def start_worker() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "registry", "worker", env=env, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

        async def published() -> int:
            return await national.count(
                "SELECT count(*) FROM records WHERE service_id = $1 AND status = 'active'", state.service_id
            )

        ihis = [make_ihi() for _ in range(total)]
        async with net.client("state") as http:
            response = await http.post("/registry/records:batch", json=[{"ihi": i, "serviceId": gateway} for i in ihis])
        assert response.json()["created"] == total
        worker = await start_worker()
        try:
            for _ in range(3000):
                if await published() > 0:
                    break
                await asyncio.sleep(0.02)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            at_kill = await published()
            assert 0 < at_kill < total, at_kill
            worker = await start_worker()
            for _ in range(900):
                if await published() == total:
                    break
                await asyncio.sleep(0.1)
        finally:
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
        assert await published() == total
        await net.check_audit()


async def test_batches_at_the_jurisdiction_publish_first_active_and_last_gone(
    template: TestCluster, settings: Settings
) -> None:
    """Through the batch path: IHIs a batch makes active at the state are found nationally; when a later batch
    removes their last active record the referral is archived there, and an IHI still active elsewhere stays."""
    ihis = [make_ihi() for _ in range(3)]
    async with national_and_state(template, settings, publisher=True) as net:
        coast, plains = await net.gateway("state", "Coast"), await net.gateway("state", "Plains")
        async with net.client("state") as http:
            registered = await http.post(
                "/registry/records:batch",
                json=[{"ihi": i, "serviceId": coast} for i in ihis] + [{"ihi": ihis[0], "serviceId": plains}],
            )
            assert registered.json()["created"] == 4
            for ihi in ihis:
                for _ in range(100):
                    if await _found_at_national(net, ihi, coast):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"{ihi} not found at the national registry")
            removed = await http.post(
                "/registry/records:batch", json=[{"ihi": i, "serviceId": coast, "status": "removed"} for i in ihis]
            )
            assert removed.json()["updated"] == 3
        national, state = net["national"], net["state"]
        archived = 0
        for _ in range(100):
            archived = await national.count(
                "SELECT count(*) FROM records WHERE ihi = ANY($1::text[]) AND service_id = $2 AND status = 'archived'",
                ihis, state.service_id,
            )  # fmt: skip
            if archived == 2:
                break
            await asyncio.sleep(0.05)
        assert archived == 2
        assert await _found_at_national(net, ihis[0], plains)
        await net.check_audit()


async def test_a_published_referral_discloses_nothing_the_jurisdictions_consent_withholds(
    template: TestCluster, settings: Settings
) -> None:
    """The national registry holds only the referral; a consumer following it is answered by the jurisdiction's
    decision point, so after an opt-out there the national answer names no gateway and says it withheld
    something. An opt-out recorded at the national registry withholds the referral itself."""
    ihi = make_ihi()
    async with national_and_state(template, settings, publisher=True) as net:
        gateway = await net.gateway("state", "Coast")
        await net.put("state", ihi, gateway)
        started = time.monotonic()
        while not await _found_at_national(net, ihi, gateway):
            assert time.monotonic() - started < 5.0, "not found at the national registry within 5 s"
            await asyncio.sleep(0.05)

        opted = await run_cli(net["state"], "consent", "opt-out", ihi)
        assert opted.code == 0, opted.err
        async with net.client("national") as http:
            followed = (await http.get(f"/registry/records/{ihi}", params={"follow": "true"})).json()
            assert (followed["records"], followed["withheld"]) == ([], True)
            pointer = (await http.get(f"/registry/records/{ihi}")).json()
            assert [r["serviceId"] for r in pointer["records"]] == [net["state"].service_id]  # a referral only

            opted = await run_cli(net["national"], "consent", "opt-out", ihi)
            assert opted.code == 0, opted.err
            pointer = (await http.get(f"/registry/records/{ihi}")).json()
            assert (pointer["records"], pointer["withheld"]) == ([], True)
        await net.check_audit()
