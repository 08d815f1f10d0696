"""Checklist 1-9: creating a Subscription, what is refused, and the CapabilityStatement."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import make_ihi, with_bad_check_digit
from tests.server import RunningServer
from tests.subscriptions.helpers import BACKPORT_SD, IHI_SYSTEM, Subscriptions, subscription_body

_R5 = "application/fhir+json; fhirVersion=5.0"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"


def _issues(response: httpx.Response) -> str:
    return " ".join(str(issue) for issue in response.json()["issue"])


async def test_c01_create_answers_201_requested_with_payload_and_headers_unchanged(subs: Subscriptions) -> None:
    """A valid backport Subscription is created (201, Location) as requested, payload and headers echoed as sent."""
    hook = subs.subscriber.hook()
    headers = ["Authorization: Bearer limited-use-token", "X-Trace:abc"]
    body = subs.body(hook, make_ihi(), headers=headers, payload="application/fhir+json; fhirVersion=4.0")
    response = await subs.http.post("/fhir/Subscription", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["id"]
    assert response.headers["location"].endswith(f"/fhir/Subscription/{created['id']}")
    assert created["status"] == "requested"
    assert created["channel"]["payload"] == "application/fhir+json; fhirVersion=4.0"
    assert created["channel"]["header"] == headers
    assert created["criteria"] == subs.topic


async def test_c02_criteria_must_be_the_topic(subs: Subscriptions) -> None:
    """A criteria other than this server's topic is refused (422 OperationOutcome), nothing created."""
    hook = subs.subscriber.hook()
    for criteria in (
        "https://example.org/fhir/SubscriptionTopic/patient-registration/1",
        "https://example.org/other/SubscriptionTopic/patient-registration",
        "/fhir/SubscriptionTopic/patient-registration",
        f"{subs.server.base_url}/fhir/SubscriptionTopic/encounter-start",
        "Basic?patient=8003608166690503",
    ):
        body = subscription_body(criteria, hook.url, filters=[f"patient={make_ihi()}"])
        response = await subs.http.post("/fhir/Subscription", json=body)
        assert response.status_code == 422, criteria
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "Subscription.criteria" in _issues(response)
    assert hook.received == []


async def test_the_topic_is_recognised_under_any_host_name(subs: Subscriptions) -> None:
    """A topic URL learned through another host name of the server (localhost rather than 127.0.0.1) is the topic."""
    other_name = subs.topic.replace("127.0.0.1", "localhost")
    assert other_name != subs.topic
    body = subscription_body(other_name, subs.subscriber.hook().url, filters=[f"patient={make_ihi()}"])
    assert (await subs.http.post("/fhir/Subscription", json=body)).status_code == 201


@pytest.mark.parametrize("form", ["patient={ihi}", "Basic?patient={ihi}", "Basic.patient={ihi}"])
async def test_c03_the_three_filter_spellings_are_accepted(subs: Subscriptions, form: str) -> None:
    """Bare, `?` and `.` filter spellings are accepted, the IHI as system|value or bare, written canonically."""
    ihi = make_ihi()
    for value in (ihi, f"{IHI_SYSTEM}|{ihi}"):
        body = subs.body(subs.subscriber.hook(), filters=[form.format(ihi=value), "status=active,removed"])
        created = await subs.create(body)
        filters = [ext["valueString"] for ext in created["_criteria"]["extension"]]
        assert filters == [f"patient={IHI_SYSTEM}|{ihi}", "status=active,removed"]


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        (["colour=red"], "unknown filter"),
        (["patient=800360123456789"], "invalid IHI"),  # 15 digits
        (["patient=9003608166690503"], "invalid IHI"),  # not 800360
        (["patient:identifier=8003608166690503"], "modifiers"),
        (["Encounter?patient=8003608166690503"], "not 'Encounter'"),
        (["status=lost"], "unknown status"),
        (["service=not-a-service-id"], "invalid service ID"),
    ],
)
async def test_c03_bad_filters_are_refused(subs: Subscriptions, filters: list[str], where: str) -> None:
    """Unknown filter names, malformed IHIs, modifiers, other resource types and bad values are refused (422)."""
    body = subs.body(subs.subscriber.hook(), filters=filters)
    response = await subs.http.post("/fhir/Subscription", json=body)
    assert response.status_code == 422
    assert where in _issues(response)


async def test_c03_luhn_failure_and_cross_version_extension_are_refused(subs: Subscriptions) -> None:
    """An IHI failing its Luhn check, and the R5 cross-version filter extension on _criteria, are refused (422)."""
    hook = subs.subscriber.hook()
    response = await subs.http.post("/fhir/Subscription", json=subs.body(hook, with_bad_check_digit(make_ihi())))
    assert response.status_code == 422
    body = subs.body(hook, make_ihi())
    body["_criteria"]["extension"][0]["url"] = (
        "http://hl7.org/fhir/5.0/subscriptions-backport/StructureDefinition/backport-filter-criteria"
    )
    response = await subs.http.post("/fhir/Subscription", json=body)
    assert response.status_code == 422
    assert "Subscription._criteria.extension[0]" in _issues(response)


async def test_c04_only_rest_hook_channels(subs: Subscriptions) -> None:
    """Channel types other than rest-hook, and a custom backport-channel-type, are refused (422)."""
    hook = subs.subscriber.hook()
    for channel_type in ("websocket", "email", "message"):
        response = await subs.http.post(
            "/fhir/Subscription", json=subs.body(hook, make_ihi(), channel_type=channel_type)
        )
        assert response.status_code == 422, channel_type
    body = subs.body(hook, make_ihi())
    body["channel"]["_type"] = {
        "extension": [
            {"url": f"{BACKPORT_SD}/backport-channel-type", "valueCoding": {"system": "urn:x", "code": "kafka"}}
        ]
    }
    response = await subs.http.post("/fhir/Subscription", json=body)
    assert response.status_code == 422
    assert "custom channel" in _issues(response)


async def test_c05_endpoints_outside_dev_mode(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """Outside dev mode, http, and loopback, private, link-local or metadata addresses are refused (422)."""
    topic = f"{server.base_url}/fhir/SubscriptionTopic/patient-registration"
    for endpoint in (
        "http://subscriber.example.org/notify",
        "https://127.0.0.1/notify",
        "https://localhost:8443/notify",
        "https://10.20.30.40/notify",
        "https://192.168.1.10/notify",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/notify",
        "https://[::ffff:127.0.0.1]/notify",
        "https://user:pass@8.8.8.8/notify",
        "ftp://8.8.8.8/notify",
    ):
        body = subscription_body(topic, endpoint, filters=[f"patient={make_ihi()}"])
        response = await fhir.post("/fhir/Subscription", json=body)
        assert response.status_code == 422, endpoint
        assert "Subscription.channel.endpoint" in _issues(response)


@pytest.mark.parametrize(
    ("payload", "accepted"),
    [
        ("application/fhir+json", True),
        ("application/json", True),
        ("application/fhir+json; fhirVersion=4.0", True),
        ("application/fhir+xml", False),
        ("text/plain", False),
        ("application/fhir+json; fhirVersion=4.3", False),
        ("application/fhir+json; fhirVersion=5.0", False),
    ],
)
async def test_c06_payload_mime_types(subs: Subscriptions, payload: str, accepted: bool) -> None:
    """channel.payload is FHIR JSON (optionally fhirVersion=4.0); other types and versions are refused (422)."""
    response = await subs.http.post(
        "/fhir/Subscription", json=subs.body(subs.subscriber.hook(), make_ihi(), payload=payload)
    )
    assert response.status_code == (201 if accepted else 422)


async def test_c07_payload_content_is_required_and_known(subs: Subscriptions) -> None:
    """The payload content code is required (profile 1..1) and one of empty, id-only, full-resource."""
    hook = subs.subscriber.hook()
    missing = await subs.http.post("/fhir/Subscription", json=subs.body(hook, make_ihi(), content=None))
    assert missing.status_code == 422
    assert "payload content" in _issues(missing)
    unknown = await subs.http.post("/fhir/Subscription", json=subs.body(hook, make_ihi(), content="everything"))
    assert unknown.status_code == 422
    for content in ("empty", "id-only"):
        created = await subs.create(subs.body(hook, make_ihi(), content=content))
        assert created["channel"]["_payload"]["extension"][0]["valueCode"] == content


async def test_c08_channel_numbers_are_clamped_and_returned(subs: Subscriptions) -> None:
    """heartbeatPeriod, timeout and maxCount beyond the documented limits are clamped; the clamped values returned."""
    body = subs.body(subs.subscriber.hook(), make_ihi(), heartbeat=10_000_000, timeout=999, max_count=500)
    created = await subs.create(body)
    values = {ext["url"].rsplit("/", 1)[1]: ext for ext in created["channel"]["extension"]}
    assert values["backport-heartbeat-period"]["valueUnsignedInt"] == 86_400
    assert values["backport-timeout"]["valueUnsignedInt"] == 5  # timeout_max of the test server
    assert values["backport-max-count"]["valuePositiveInt"] == 10  # max_count_max of the test server
    defaults = await subs.create(subs.body(subs.subscriber.hook(), make_ihi()))
    values = {ext["url"].rsplit("/", 1)[1]: ext for ext in defaults["channel"]["extension"]}
    assert "backport-heartbeat-period" not in values
    assert values["backport-timeout"]["valueUnsignedInt"] == 2  # timeout_default
    assert values["backport-max-count"]["valuePositiveInt"] == 1


async def test_c09_capability_statement_declares_the_backport_server(
    fhir: httpx.AsyncClient, server: RunningServer
) -> None:
    """/metadata instantiates the backport server, lists the profile, the topic canonical and the operations."""
    statement = (await fhir.get("/fhir/metadata")).json()
    assert f"{BACKPORT}/CapabilityStatement/backport-subscription-server-r4" in statement["instantiates"]
    resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    assert f"{BACKPORT_SD}/backport-subscription" in resource["supportedProfile"]
    topics = [
        ext["valueCanonical"]
        for ext in resource["extension"]
        if ext["url"] == f"{BACKPORT_SD}/capabilitystatement-subscriptiontopic-canonical"
    ]
    assert topics == [
        f"{server.base_url}/fhir/SubscriptionTopic/patient-registration",
        f"{server.base_url}/fhir/SubscriptionTopic/patient-consent",
    ]
    operations = {op["name"]: op["definition"] for op in resource["operation"]}
    assert operations == {
        "status": f"{BACKPORT}/OperationDefinition/backport-subscription-status",
        "events": f"{BACKPORT}/OperationDefinition/backport-subscription-events",
    }
    assert {i["code"] for i in resource["interaction"]} == {"read", "search-type", "create", "update", "delete"}
    r5 = await fhir.get("/fhir/SubscriptionTopic/patient-registration", headers={"Accept": _R5})
    assert r5.status_code == 200
    assert r5.headers["content-type"] == "application/fhir+json; fhirVersion=5.0"
    assert r5.json()["url"] == topics[0]
    assert [f["filterParameter"] for f in r5.json()["canFilterBy"]] == ["patient", "service", "status"]


async def test_the_topic_is_an_r4_basic_by_default(fhir: httpx.AsyncClient) -> None:
    """Without asking for R5, the topic is the Backport IG's R4 representation: a Basic coded SubscriptionTopic
    carrying the R5 cross-version extensions, with the same canonical URL, triggers and filters as the R5 one."""
    r4 = (await fhir.get("/fhir/SubscriptionTopic/patient-registration")).json()
    r5 = (await fhir.get("/fhir/SubscriptionTopic/patient-registration", headers={"Accept": _R5})).json()
    assert r4["resourceType"] == "Basic"
    assert r4["code"]["coding"] == [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
    values = {e["url"].rsplit(".", 1)[-1]: e for e in r4["extension"]}
    assert values["url"]["valueUri"] == r5["url"]
    assert values["status"]["valueCode"] == "active"
    filters = [e for e in r4["extension"] if e["url"].endswith("SubscriptionTopic.canFilterBy")]
    names = [next(p["valueString"] for p in f["extension"] if p["url"] == "filterParameter") for f in filters]
    assert names == ["patient", "service", "status"]
    trigger = next(e for e in r4["extension"] if e["url"].endswith("SubscriptionTopic.resourceTrigger"))
    interactions = [p["valueCode"] for p in trigger["extension"] if p["url"] == "supportedInteraction"]
    assert interactions == ["create", "update"]
