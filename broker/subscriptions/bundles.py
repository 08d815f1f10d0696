"""Notification Bundles and status Parameters of the R4 backport profiles (pure).

Every notification is a ``history`` Bundle whose first entry is a ``Parameters`` resource with
the ``backport-subscription-status-r4`` profile; ``$status`` answers a ``searchset`` of those
Parameters. What an event notification carries follows the subscription's payload content:

- ``empty``: the status entry only, no ``focus``, no ``topic``;
- ``id-only``: ``focus`` (absolute URL of the RegistryRecord) and ``topic``; one extra entry per
  record with ``fullUrl``, ``request`` and ``response`` but no ``resource``;
- ``full-resource``: the same entries with the record (as the event left it) in ``resource``.

A ``patient-consent`` event's focus is the Consent (``Consent/<id>``), never with its content. An
event the privacy decision point withheld (``$events`` only: it is never sent) has no focus and no
entry, only its number, its time and the ``notification-event-withheld`` extension.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas.fhir.canonical import EXT_EVENT_WITHHELD, EXT_REGISTRATION_CHANGE
from schemas.fhir.record import registry_record
from schemas.fhir.subscription import PROFILE_STATUS, SUBSCRIPTION_ERROR_SYSTEM

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from schemas.fhir.canonical import Canonicals

__all__ = ("EventView", "StatusView", "notification_bundle", "status_parameters", "status_searchset")


@dataclass(frozen=True, slots=True)
class EventView:
    """One numbered event and the record as the change left it (or the Consent that changed)."""

    number: int
    occurred_at: datetime
    change: str
    ihi: str
    record_id: UUID | None = None
    service_id: str | None = None
    status: str | None = None
    type: str | None = None
    version: int | None = None
    updated: datetime | None = None
    consent_id: UUID | None = None
    withheld: bool = False

    @property
    def focus(self) -> str:
        """The relative reference of what the event is about."""
        return f"Consent/{self.consent_id}" if self.consent_id is not None else f"Basic/{self.record_id}"


@dataclass(frozen=True, slots=True)
class StatusView:
    """A subscription's status as a notification or ``$status`` states it."""

    base: str
    subscription_id: str
    topic: str
    status: str
    events_since_start: int
    content: str
    error_code: str | None = None
    error_text: str | None = None
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The subscription's absolute, unversioned URL."""
        return f"{self.base}/Subscription/{self.subscription_id}"


def _event_part(view: StatusView, event: EventView, content: str, withheld_url: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "event-number", "valueString": str(event.number)},
        {"name": "timestamp", "valueInstant": event.occurred_at},
    ]
    if event.withheld:
        return {"extension": [{"url": withheld_url, "valueBoolean": True}], "name": "notification-event", "part": parts}
    if content != "empty":
        parts.append({"name": "focus", "valueReference": {"reference": f"{view.base}/{event.focus}"}})
    return {"name": "notification-event", "part": parts}


def status_parameters(
    view: StatusView,
    kind: str,
    events: Sequence[EventView] = (),
    *,
    content: str | None = None,
    events_since: int | None = None,
    param_id: str | None = None,
    withheld_url: str = "",
) -> dict[str, Any]:
    """The status Parameters of a notification (``handshake``, ``heartbeat``, ``event-notification``,
    ``query-event``) or of ``$status`` (``query-status``)."""
    level = content or view.content
    param_id = param_id or str(uuid.uuid4())
    subscription: dict[str, Any] = {"name": "subscription", "valueReference": {"reference": view.url}}
    if view.stats:
        subscription["extension"] = view.stats
    parameters: list[dict[str, Any]] = [subscription]
    if level != "empty":
        parameters.append({"name": "topic", "valueCanonical": view.topic})
    parameters.append({"name": "status", "valueCode": view.status})
    parameters.append({"name": "type", "valueCode": kind})
    since = events_since if events_since is not None else view.events_since_start
    parameters.append({"name": "events-since-subscription-start", "valueString": str(since)})
    parameters.extend(_event_part(view, event, level, withheld_url) for event in events)
    if view.error_code or view.error_text:
        concept: dict[str, Any] = {}
        if view.error_code:
            concept["coding"] = [{"system": SUBSCRIPTION_ERROR_SYSTEM, "code": view.error_code}]
        if view.error_text:
            concept["text"] = view.error_text
        parameters.append({"name": "error", "valueCodeableConcept": concept})
    return {
        "resourceType": "Parameters",
        "id": param_id,
        "meta": {"profile": [PROFILE_STATUS]},
        "parameter": parameters,
    }


def notification_bundle(
    view: StatusView,
    kind: str,
    events: Sequence[EventView] = (),
    *,
    canon: Canonicals,
    content: str | None = None,
    outcome: dict[str, Any] | None = None,
    events_since: int | None = None,
    identity: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A ``history`` notification Bundle: the status entry, then one entry per event's record.

    ``outcome`` (an OperationOutcome) goes in the status entry's ``response.outcome`` (``$events``
    uses it to say which event numbers are no longer kept). With ``identity`` (the notification's
    ``webhook-id``) and ``timestamp`` the Bundle is the same bytes whenever it is rendered again:
    its ids derive from the identity.
    """
    level = content or view.content
    bundle_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identity}/bundle")) if identity else str(uuid.uuid4())
    param_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identity}/status")) if identity else None
    status = status_parameters(
        view, kind, events, content=level, events_since=events_since, param_id=param_id,
        withheld_url=canon.extension(EXT_EVENT_WITHHELD),
    )  # fmt: skip
    response: dict[str, Any] = {"status": "200"}
    if outcome is not None:
        response["outcome"] = outcome
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{view.url}/$status"},
            "response": response,
        }
    ]
    if level != "empty":
        for event in events:
            if event.withheld:
                continue
            entry: dict[str, Any] = {"fullUrl": f"{view.base}/{event.focus}"}
            if level == "full-resource" and event.record_id is not None:
                entry["resource"] = registry_record(
                    canon, record_id=str(event.record_id), ihi=event.ihi, service_id=event.service_id or "",
                    status=event.status or "", type_=event.type or "", version=event.version or 0,
                    last_updated=event.updated or event.occurred_at,
                )  # fmt: skip
            created = event.change == "created"
            if event.record_id is not None:
                entry["extension"] = [{"url": canon.extension(EXT_REGISTRATION_CHANGE), "valueCode": event.change}]
            kind_of = event.focus.split("/", 1)[0]
            entry["request"] = {"method": "POST" if created else "PUT", "url": kind_of if created else event.focus}
            entry["response"] = {"status": "201" if created else "200"}
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "history",
        "timestamp": timestamp or datetime.now(UTC),
        "entry": entries,
    }


def status_searchset(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``$status`` answer: a ``searchset`` of status Parameters, one per subscription."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": datetime.now(UTC),
        "total": len(parameters),
    }
    if parameters:
        bundle["entry"] = [
            {"fullUrl": f"urn:uuid:{p['id']}", "resource": p, "search": {"mode": "match"}} for p in parameters
        ]
    return bundle
