"""Pure subscription rules: filters, retry schedule and jitter, signatures, permissions (the endpoint
policy is the outbound address policy: tests/security/test_outbound_addresses.py)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook

from broker.subscriptions import permissions
from broker.subscriptions.filters import parse_filters
from broker.subscriptions.retry import RetryPolicy, parse_duration, parse_retry_after, parse_schedule
from broker.subscriptions.signing import check_secret, generate_secret, webhook_headers
from registry import errors
from tests.factories import make_ihi, make_service_id

SYSTEM = "https://ief-registry.org/fhir/sid/service-id"
IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"


def _filters(*texts: str):  # type: ignore[no-untyped-def]
    return parse_filters([(text, f"f[{i}]") for i, text in enumerate(texts)], service_system=SYSTEM)


def test_filters_read_every_spelling_into_one_canonical_form() -> None:
    """Bare, ?, . spellings; system|value, bare and Patient/ IHIs; service and status alternatives."""
    ihi, service = make_ihi(), make_service_id()
    for text in (f"patient={ihi}", f"Basic?patient={IHI_SYSTEM}|{ihi}", f"Basic.patient=Patient/{ihi}"):
        found = _filters(text, f"service={SYSTEM}|{service},{service}", "status=removed,active")
        assert found.ihi == ihi
        assert found.services == (service,)
        assert found.statuses == ("removed", "active")
        assert found.canonical() == [f"patient={IHI_SYSTEM}|{ihi}", f"service={service}", "status=removed,active"]


@pytest.mark.parametrize(
    "text",
    ["patient", "patient=", "patient=8003608166690503,8003608166690511", "patient=urn:x|8003608166690503", "x=1"],
)
def test_filters_refuse_what_they_cannot_honour(text: str) -> None:
    """No value, two patients, a foreign IHI system, an unknown name: refused naming where."""
    with pytest.raises(errors.InvalidInput) as caught:
        _filters(text)
    assert caught.value.issues[0].expression == "f[0]"


def test_a_filter_given_twice_is_refused() -> None:
    """Filters are AND-ed and each named once; alternatives go in one filter with commas."""
    with pytest.raises(errors.InvalidInput, match="once"):
        _filters("status=active", "status=removed")


def test_retry_schedule_jitter_and_exhaustion() -> None:
    """Waits follow the schedule within the jitter; after the last one the notification is exhausted."""
    policy = RetryPolicy(parse_schedule("5s,5m,2h"), jitter=0.2, handshake_attempts=2)
    rng = random.Random(7)
    waits = [policy.next_wait("event-notification", failed, None, rng) for failed in (1, 2, 3)]
    for wait, base in zip(waits, (5, 300, 7200), strict=True):
        assert wait is not None
        assert 0.8 * base <= wait <= 1.2 * base
    assert len({policy.next_wait("event-notification", 1, None, rng) for _ in range(20)}) > 1  # jittered
    assert policy.next_wait("event-notification", 4, None, rng) is None
    assert policy.next_wait("handshake", 1, None, rng) is not None
    assert policy.next_wait("handshake", 2, None, rng) is None
    assert policy.next_wait("heartbeat", 1, None, rng) is None


def test_default_schedule_spans_hours() -> None:
    """The default schedule retries over about three days: immediately, 5 s, 5 min, 30 min, 2 h … 24 h."""
    from registry.config import SubscriptionSettings

    schedule = parse_schedule(SubscriptionSettings().retry_schedule)
    assert schedule[:3] == (5.0, 300.0, 1800.0)
    assert sum(schedule) / 3600 > 70


def test_retry_after_is_honoured_and_capped() -> None:
    """Retry-After in seconds or as an HTTP date replaces the scheduled wait, capped by retry_after_max."""
    policy = RetryPolicy((5.0, 5.0), retry_after_max=60)
    assert policy.next_wait("event-notification", 1, 30.0, random.Random()) == 30.0
    assert policy.next_wait("event-notification", 1, 3600.0, random.Random()) == 60
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    assert parse_retry_after("soon") is None
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError, match="duration"):
        parse_duration("often")


def test_signatures_verify_with_the_reference_library() -> None:
    """Headers made here verify with standardwebhooks, with either secret during a rotation."""
    old, new = generate_secret(), generate_secret()
    assert 24 <= len(check_secret(old)) <= 64
    body = b'{"resourceType":"Bundle"}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = webhook_headers([new, old], "msg_1", timestamp, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    for bad in ("secret", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="secret"):
            check_secret(bad)


def test_permissions_by_content_and_filter() -> None:
    """Receiving needs Subscription read; id-only and full-resource Basic read; full-resource the client's permission;
    no patient filter admin."""
    receiver = frozenset({"system/Subscription.cruds", "system/Basic.rs"})
    assert permissions.refusal(receiver, content="id-only", has_patient=True, full_resource_allowed=False) is None
    assert permissions.refusal(frozenset({"system/Subscription.r"}), content="empty", has_patient=True,
                               full_resource_allowed=False) is None  # fmt: skip
    assert permissions.refusal(frozenset({"system/Subscription.r"}), content="id-only", has_patient=True,
                               full_resource_allowed=False)  # fmt: skip
    assert permissions.refusal(receiver, content="full-resource", has_patient=True, full_resource_allowed=False)
    assert permissions.refusal(receiver, content="full-resource", has_patient=True, full_resource_allowed=True) is None
    assert permissions.refusal(receiver, content="id-only", has_patient=False, full_resource_allowed=False)
    assert (
        permissions.refusal(frozenset({"admin"}), content="id-only", has_patient=False, full_resource_allowed=False)
        is None
    )
