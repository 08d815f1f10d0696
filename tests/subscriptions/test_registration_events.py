"""Every registration is an event (DESIGN §11): re-registrations notify; an Idempotency-Key makes a retry harmless."""

from __future__ import annotations

from datetime import datetime

from joserfc.jwk import RSAKey

from tests.cli import run_cli
from tests.factories import make_service_id
from tests.subscriptions.helpers import Subscriptions
from tests.subscriptions.subscriber import Received

_GATEWAY = "system/Basic.cu system/Basic.rs"


def _changes(hook_received: list[Received]) -> list[str]:
    found: list[str] = []
    for received in hook_received:
        for entry in received.bundle["entry"][1:]:
            found += [
                ext["valueCode"] for ext in entry.get("extension", []) if ext["url"].endswith("/registration-change")
            ]
    return found


async def test_three_registrations_give_three_entries_and_notifications(
    subs: Subscriptions, client_key: RSAKey
) -> None:
    """Three registrations of one IHI at one gateway: history created, registered, registered; lastUpdated moves each
    time; three notifications, each saying which change it was."""
    hook = subs.subscriber.hook()
    _, ihi = await subs.active(hook)
    _, gateway = await subs.client(_GATEWAY, public_key_pem=client_key.as_pem(private=False).decode())
    async with gateway:
        answers = [await gateway.put(f"/registry/records/{ihi}/{subs.service_id}", json={}) for _ in range(3)]
        history = (await gateway.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert [a.status_code for a in answers] == [201, 200, 200]
    stamps = [datetime.fromisoformat(a.json()["lastUpdated"]) for a in answers]
    assert stamps[0] < stamps[1] < stamps[2]
    assert [(e["change"], e["version"]) for e in history] == [("created", 1), ("registered", 2), ("registered", 3)]
    await hook.wait(lambda h: h.event_numbers() == [1, 2, 3])
    assert _changes(hook.of_kind("event-notification")) == ["created", "registered", "registered"]


async def test_three_registrations_with_one_idempotency_key_give_one(subs: Subscriptions, client_key: RSAKey) -> None:
    """The same three registrations carrying one Idempotency-Key: one history entry, one notification, and the first
    answer (201 and its body) three times."""
    hook = subs.subscriber.hook()
    _, ihi = await subs.active(hook)
    _, gateway = await subs.client(_GATEWAY, public_key_pem=client_key.as_pem(private=False).decode())
    url = f"/registry/records/{ihi}/{subs.service_id}"
    async with gateway:
        answers = [await gateway.put(url, json={}, headers={"Idempotency-Key": '"scan-42"'}) for _ in range(3)]
        history = (await gateway.get(f"/registry/records/{ihi}/history")).json()["history"]
        fresh = await gateway.put(url, json={}, headers={"Idempotency-Key": '"scan-43"'})
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[1].content == answers[0].content == answers[2].content
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true", "true"]
    assert [e["change"] for e in history] == ["created"]
    assert fresh.status_code == 200  # a new key is a new registration
    await hook.wait(lambda h: h.event_numbers() == [1, 2])
    assert _changes(hook.of_kind("event-notification")) == ["created", "registered"]


async def test_lifecycle_commands_notify_like_any_write(subs: Subscriptions) -> None:
    """`services move` and `services retire` notify a subscriber on the patient (moved, then status-changed: the
    archive that takes the record out of routing), and history names the operator for both."""
    hook = subs.subscriber.hook()
    _, ihi = await subs.active(hook)
    old, new = make_service_id(), make_service_id()
    await subs.server.add_service(old)
    await subs.server.add_service(new)
    await subs.register(ihi, service_id=old)
    moved = await run_cli(subs.server, "services", "move", old, new)
    assert moved.code == 0, moved.err
    retired = await run_cli(subs.server, "services", "retire", new)
    assert retired.code == 0, retired.err
    await hook.wait(lambda h: h.event_numbers() == [1, 2, 3])
    assert _changes(hook.of_kind("event-notification")) == ["created", "moved", "status-changed"]
    history = (await subs.http.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert [(e["change"], e["actor"]["clientId"], e["actor"]["admin"]) for e in history][1:] == [
        ("moved", "operator", True),
        ("status-changed", "operator", True),
    ]
    assert history[1]["previousService"] == old


async def test_batch_items_are_events_as_single_writes_are(subs: Subscriptions, client_key: RSAKey) -> None:
    """Through the batch path: a created item, its keyed repeat (the first result, nothing stored), a re-registration
    (lastUpdated and version move) and a removal give history created, registered, status-changed by the gateway's
    client and three notifications, each saying which change it was."""
    hook = subs.subscriber.hook()
    _, ihi = await subs.active(hook)
    client_id, gateway = await subs.client(_GATEWAY, public_key_pem=client_key.as_pem(private=False).decode())
    keyed = [{"ihi": ihi, "serviceId": subs.service_id, "idempotencyKey": "load-1"}]
    async with gateway:
        bodies = [
            (await gateway.post("/registry/records:batch", json=items)).json()
            for items in (keyed, keyed, [{"ihi": ihi, "serviceId": subs.service_id}],
                          [{"ihi": ihi, "serviceId": subs.service_id, "status": "removed"}])
        ]  # fmt: skip
        history = (await gateway.get(f"/registry/records/{ihi}/history")).json()["history"]
    results = [body["results"][0] for body in bodies]
    assert [(r["result"], r.get("replayed", False)) for r in results] == [
        ("created", False), ("created", True), ("registered", False), ("updated", False),
    ]  # fmt: skip
    assert results[1]["lastUpdated"] == results[0]["lastUpdated"]
    stamps = [datetime.fromisoformat(results[n]["lastUpdated"]) for n in (0, 2, 3)]
    assert stamps[0] < stamps[1] < stamps[2]
    assert [(e["change"], e["version"], e["actor"]["clientId"], e["actor"]["serviceId"]) for e in history] == [
        ("created", 1, client_id, subs.service_id),
        ("registered", 2, client_id, subs.service_id),
        ("status-changed", 3, client_id, subs.service_id),
    ]
    await hook.wait(lambda h: h.event_numbers() == [1, 2, 3])
    assert _changes(hook.of_kind("event-notification")) == ["created", "registered", "status-changed"]
