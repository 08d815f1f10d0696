"""Partial results are normal: gateways that hang, fail, lie or flood are reported, never waited on past
the deadline, and never take the broker down."""

from __future__ import annotations

import asyncio
import time

from tests.broker.conftest import BROKER_SETTINGS, Broker, gateway_token
from tests.broker.results import issues, new_uid, uids
from tests.factories import make_ihi
from tests.gateway import ReferenceGateway, reference_gateway
from tests.server import free_port

MARGIN = 2.0
"""Seconds allowed beyond a deadline on a noisy shared machine."""


def _diagnostics(bundle: dict[str, object]) -> str:
    outcome = next(e for e in bundle["entry"] if e["search"]["mode"] == "outcome")  # type: ignore[attr-defined]
    return " ".join(issue["diagnostics"] for issue in outcome["resource"]["issue"])


async def test_a_hung_gateway_costs_its_timeout_not_the_search(broker: Broker) -> None:
    """One gateway never answers: the others' studies come back within the gateway timeout (plus a margin),
    with a timeout issue for the hung one."""
    ihi = make_ihi()
    uid = new_uid()
    async with reference_gateway(token=gateway_token()) as good, reference_gateway(token=gateway_token()) as hung:
        good.study(ihi, uid)
        hung.study(ihi, new_uid())
        hung.behaviour.hang = True
        await broker.join(good, ihi)
        hung_id = await broker.join(hung, ihi)
        started = time.monotonic()
        response = await broker.search(ihi)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    bundle = response.json()
    assert uids(bundle) == [uid]
    assert issues(bundle) == {hung_id: ["timeout"]}
    assert BROKER_SETTINGS.gateway_timeout - 0.1 <= elapsed < BROKER_SETTINGS.gateway_timeout + MARGIN


async def test_prefer_wait_shortens_the_deadline(broker: Broker) -> None:
    """Prefer: wait=1 ends the search after about a second; Preference-Applied says so."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as hung:
        hung.behaviour.hang = True
        hung_id = await broker.join(hung, ihi)
        started = time.monotonic()
        response = await broker.search(ihi, headers={"Prefer": "return=representation, wait=1"})
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=1"
    assert issues(response.json()) == {hung_id: ["timeout"]}
    assert "the search's deadline" in _diagnostics(response.json())
    assert 0.9 <= elapsed < 1 + MARGIN


async def test_prefer_wait_below_a_second_counts_as_one(broker: Broker) -> None:
    """Prefer: wait=0 still gives the gateways a second; longer waits than the deadline are not applied."""
    ihi = make_ihi()
    uid = new_uid()
    async with reference_gateway(token=gateway_token()) as quick:
        quick.study(ihi, uid)
        await broker.join(quick, ihi)
        now = await broker.search(ihi, headers={"Prefer": "wait=0"})
        patient = await broker.search(ihi, headers={"Prefer": "wait=600"})
    assert (now.headers["preference-applied"], uids(now.json())) == ("wait=1", [uid])
    assert "preference-applied" not in patient.headers


async def test_error_html_and_huge_answers_are_each_reported(broker: Broker) -> None:
    """A 500, an HTML page and a 50 MB body are reported as such; the good gateway's study still arrives,
    and the search ends well within the deadline."""
    ihi = make_ihi()
    uid = new_uid()
    async with (
        reference_gateway(token=gateway_token()) as good,
        reference_gateway(token=gateway_token()) as failing,
        reference_gateway(token=gateway_token()) as html,
        reference_gateway(token=gateway_token()) as huge,
    ):
        good.study(ihi, uid)
        failing.behaviour.status = 500
        html.behaviour.html = True
        huge.behaviour.huge = 50 * 1024 * 1024
        await broker.join(good, ihi)
        ids = {name: await broker.join(gw, ihi) for name, gw in (("500", failing), ("html", html), ("huge", huge))}
        started = time.monotonic()
        response = await broker.search(ihi)
        elapsed = time.monotonic() - started
        again = await broker.search(ihi)  # the broker is still well
    assert response.status_code == again.status_code == 200
    bundle = response.json()
    assert uids(bundle) == [uid]
    assert issues(bundle) == {
        ids["500"]: ["error-response"],
        ids["html"]: ["invalid-response"],
        ids["huge"]: ["too-large"],
    }
    text = _diagnostics(bundle)
    assert "HTTP 500" in text
    assert "text/html" in text
    assert f"larger than {BROKER_SETTINGS.max_response_bytes} bytes" in text
    assert elapsed < BROKER_SETTINGS.deadline + MARGIN
    assert uids(again.json()) == [uid]


async def test_garbage_not_a_bundle_and_invalid_resources(broker: Broker) -> None:
    """Bytes that are not JSON, JSON nested 100,000 deep and JSON that is not a Bundle are invalid responses;
    a Bundle whose study is not valid FHIR keeps its valid studies and reports the rest."""
    ihi = make_ihi()
    good_uid = new_uid()
    async with (
        reference_gateway(token=gateway_token()) as garbage,
        reference_gateway(token=gateway_token()) as deep,
        reference_gateway(token=gateway_token()) as not_bundle,
        reference_gateway(token=gateway_token()) as partly,
    ):
        garbage.behaviour.garbage = True
        deep.behaviour.deep = True
        not_bundle.behaviour.not_bundle = True
        partly.study(ihi, good_uid)
        partly.study(ihi, new_uid())["numberOfSeries"] = "two"  # not an unsignedInt
        ids = [await broker.join(gw, ihi) for gw in (garbage, deep, not_bundle, partly)]
        bundle = (await broker.search(ihi)).json()
    assert uids(bundle) == [good_uid]
    assert issues(bundle) == {sid: ["invalid-response"] for sid in ids}
    text = _diagnostics(bundle)
    assert "not JSON" in text
    assert "nested too deep" in text
    assert "not a FHIR searchset Bundle" in text
    assert "1 of its 2 ImagingStudy resources are not valid FHIR R4" in text


async def test_another_patients_study_never_reaches_the_consumer(broker: Broker) -> None:
    """A study whose subject is another IHI (a gateway's mistake) is left out and reported."""
    ihi = make_ihi()
    mine = new_uid()
    async with reference_gateway(token=gateway_token()) as careless:
        careless.study(ihi, mine)
        careless.study(ihi, new_uid())["subject"]["identifier"]["value"] = make_ihi()
        careless_id = await broker.join(careless, ihi)
        bundle = (await broker.search(ihi)).json()
    assert uids(bundle) == [mine]
    assert issues(bundle) == {careless_id: ["invalid-response"]}
    assert "1 of its 2 ImagingStudy resources name another patient" in _diagnostics(bundle)


async def test_unreachable_and_refusing_gateways(broker: Broker) -> None:
    """A gateway nobody listens for is unreachable; one that refuses the broker's token is unauthorized."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as refusing:
        refusing.study(ihi, new_uid())
        refusing_id = await broker.join(refusing, ihi)
        refusing.token = gateway_token()  # the broker still holds the old one
        nobody = ReferenceGateway(token=gateway_token(), base_url=f"http://127.0.0.1:{free_port()}/fhir")
        nobody_id = await broker.join(nobody, ihi)
        bundle = (await broker.search(ihi)).json()
    assert issues(bundle) == {refusing_id: ["unauthorized"], nobody_id: ["unreachable"]}
    assert "refused the broker's credentials (HTTP 401)" in _diagnostics(bundle)


async def test_the_circuit_opens_skips_and_closes_again(broker: Broker) -> None:
    """After repeated failures a gateway is skipped at once (reported circuit-open, not asked); after the
    cool-down one probe goes through, and its success closes the circuit."""
    ihi = make_ihi()
    uid = new_uid()
    async with reference_gateway(token=gateway_token()) as flaky:
        flaky.study(ihi, uid)
        flaky.behaviour.status = 503
        flaky_id = await broker.join(flaky, ihi)
        for _ in range(BROKER_SETTINGS.breaker_failures):
            assert issues((await broker.search(ihi)).json()) == {flaky_id: ["error-response"]}
        assert flaky.searches == BROKER_SETTINGS.breaker_failures
        started = time.monotonic()
        skipped = (await broker.search(ihi)).json()
        assert time.monotonic() - started < MARGIN
        assert issues(skipped) == {flaky_id: ["circuit-open"]}
        assert flaky.searches == BROKER_SETTINGS.breaker_failures
        flaky.behaviour.status = None
        await asyncio.sleep(BROKER_SETTINGS.breaker_cooldown + 0.1)
        probe = (await broker.search(ihi)).json()
        after = (await broker.search(ihi)).json()
    assert uids(probe) == uids(after) == [uid]
    assert issues(after) == {}
    assert flaky.searches == BROKER_SETTINGS.breaker_failures + 2


async def test_a_failed_probe_opens_the_circuit_again(broker: Broker) -> None:
    """A probe that fails after the cool-down opens the circuit for another cool-down at once."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as down:
        down.behaviour.status = 500
        down_id = await broker.join(down, ihi)
        for _ in range(BROKER_SETTINGS.breaker_failures):
            await broker.search(ihi)
        await asyncio.sleep(BROKER_SETTINGS.breaker_cooldown + 0.1)
        probe = (await broker.search(ihi)).json()
        skipped = (await broker.search(ihi)).json()
    assert issues(probe) == {down_id: ["error-response"]}
    assert issues(skipped) == {down_id: ["circuit-open"]}
    assert down.searches == BROKER_SETTINGS.breaker_failures + 1
