"""Cohort subscriptions (DESIGN §11): a subscriber follows a panel of patients through a FHIR Group."""

from __future__ import annotations

import asyncio
from typing import Any

from joserfc.jwk import RSAKey

from tests.factories import IHI_SYSTEM, make_ihi
from tests.subscriptions.helpers import Subscriptions

_SUBSCRIBER = "system/Subscription.cruds system/Basic.rs system/Group.cu system/Group.rs"


def cohort(ihis: list[str]) -> dict[str, Any]:
    """A Group of patients named by IHI."""
    return {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "name": "MDT list",
        "member": [{"entity": {"identifier": {"system": IHI_SYSTEM, "value": ihi}}} for ihi in ihis],
    }


async def test_a_group_subscription_follows_its_members_only(subs: Subscriptions, client_key: RSAKey) -> None:
    """A subscription on a Group of 10,000 patients (created by a subscriber without admin) gets a notification for a
    member's registration and none for a non-member's; changing the Group changes what is delivered next."""
    _, subscriber = await subs.client(_SUBSCRIBER, public_key_pem=client_key.as_pem(private=False).decode())
    members = [make_ihi() for _ in range(10_000)]
    outsider, newcomer = make_ihi(), make_ihi()
    async with subscriber:
        created = await subscriber.post("/fhir/Group", json=cohort(members))
        assert created.status_code == 201, created.text
        group_id = created.json()["id"]
        hook = subs.subscriber.hook()
        body = subs.body(hook, filters=[f"patient-group=Group/{group_id}"])
        subscription = await subs.create(body, subscriber)
        await subs.wait_status(subscription["id"], "active", subscriber)
        await subs.register(outsider)
        await subs.register(members[4321])
        await hook.wait(lambda h: h.event_numbers() == [1])
        replaced = await subscriber.put(f"/fhir/Group/{group_id}", json={**cohort([newcomer]), "id": group_id})
        assert replaced.status_code == 200
        await subs.register(members[4321])  # no longer a member
        await subs.register(newcomer)
        await hook.wait(lambda h: h.event_numbers() == [1, 2])
        read = (await subscriber.get(f"/fhir/Group/{group_id}")).json()
    events = await subs.sql(
        "SELECT ihi::text FROM subscription_events WHERE subscription_id = $1 ORDER BY event_number", subscription["id"]
    )
    assert [e["ihi"] for e in events] == [members[4321], newcomer]
    assert [m["entity"]["identifier"]["value"] for m in read["member"]] == [newcomer]


async def test_another_clients_group_cannot_be_followed(subs: Subscriptions, client_key: RSAKey) -> None:
    """A subscription naming a Group its client does not own is 422; the Group reads as 404 to that client. Each
    Group request is audited, naming the Group and its size."""
    pem = client_key.as_pem(private=False).decode()
    owner_id, owner = await subs.client(_SUBSCRIBER, public_key_pem=pem)
    stranger_id, stranger = await subs.client(_SUBSCRIBER, public_key_pem=pem)
    async with owner, stranger:
        group_id = (await owner.post("/fhir/Group", json=cohort([make_ihi(), make_ihi()]))).json()["id"]
        body = subs.body(subs.subscriber.hook(), filters=[f"patient-group=Group/{group_id}"])
        refused = await stranger.post("/fhir/Subscription", json=body)
        hidden = await stranger.get(f"/fhir/Group/{group_id}")
        read = await owner.get(f"/fhir/Group/{group_id}")
    assert refused.status_code == 422
    assert (hidden.status_code, read.status_code) == (404, 200)
    query = "SELECT client_id, status, detail FROM audit_events WHERE path LIKE '/fhir/Group%' AND client_id = ANY($1)"
    rows: list[tuple[str, int, str]] = []
    for _ in range(100):  # a read's row is written by the group commit, just after the answer
        found = await subs.sql(query, [owner_id, stranger_id])
        rows = sorted((r["client_id"], r["status"], r["detail"] or "") for r in found)
        if len(rows) == 3:
            break
        await asyncio.sleep(0.05)
    assert [(client, status) for client, status, _ in rows] == sorted(
        [(owner_id, 201), (owner_id, 200), (stranger_id, 404)]
    )
    assert {detail for client, _, detail in rows if client == owner_id} == {
        f"Group/{group_id} created with 2 members",
        f"Group/{group_id} read with 2 members",
    }
