"""The topics (registrations, consent changes): the R4 representation the Subscriptions Backport IG
defines, and the R5 resource.

R4 has no ``SubscriptionTopic`` resource. The Backport IG (STU 1.1.0) represents one in R4 as a
``Basic`` whose ``code`` is ``SubscriptionTopic`` (``http://hl7.org/fhir/fhir-types``) and whose
elements are the R5 cross-version extensions (``http://hl7.org/fhir/5.0/StructureDefinition/
extension-SubscriptionTopic.<element>``). ``topic_basic`` is that representation, derived from
``topic_document`` (the R5 resource, also valid R4B), so the two can never say different things.
Both keep the topic's canonical URL; the server answers the R5 JSON to a client that asks for
``fhirVersion=5.0`` (or ``4.3``) in ``Accept``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.fhir.subscription import CONSENT_TOPIC_ID, TOPIC_ID

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ("CROSS_VERSION", "topic_basic", "topic_document")

CROSS_VERSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
"""Prefix of the R5 cross-version extensions (``.url``, ``.status``, ``.resourceTrigger`` …)."""

_TOP_LEVEL = (
    ("url", "valueUri"), ("version", "valueString"), ("title", "valueString"), ("status", "valueCode"),
    ("date", "valueDateTime"), ("description", "valueMarkdown"),
)  # fmt: skip
_PARTS = {
    "description": "valueMarkdown",
    "resource": "valueUri",
    "supportedInteraction": "valueCode",
    "filterParameter": "valueString",
}
_BACKBONES = ("resourceTrigger", "canFilterBy", "notificationShape")


def topic_document(url: str, *, version: str, date: datetime, topic: str = TOPIC_ID) -> dict[str, Any]:
    """The ``SubscriptionTopic`` of registrations (or of consent changes) as an R5 resource (valid R4B JSON too)."""
    if topic == CONSENT_TOPIC_ID:
        return _consent_topic(url, version=version, date=date)
    basic = "http://hl7.org/fhir/StructureDefinition/Basic"
    return {
        "resourceType": "SubscriptionTopic",
        "id": TOPIC_ID,
        "url": url,
        "version": version,
        "title": "Patient imaging registration",
        "status": "active",
        "date": date,
        "description": "A registry record (Basic, RegistryRecord profile) was created or changed status: a service "
        "now holds, no longer holds, or archived imaging for a patient. The focus of each event is the record.",
        "resourceTrigger": [
            {
                "description": "A RegistryRecord is created, or its status changes.",
                "resource": basic,
                "supportedInteraction": ["create", "update"],
            }
        ],
        "canFilterBy": [
            {
                "description": "The patient: the IHI as <IHI system>|<IHI>, a bare IHI, or Patient/<IHI>. "
                "Without it the subscription needs the admin scope.",
                "resource": basic,
                "filterParameter": "patient",
            },
            {
                "description": "The service that holds or knows the data (IEF service ID; comma for several).",
                "resource": basic,
                "filterParameter": "service",
            },
            {
                "description": "The record's new status: active, removed or archived (comma for several).",
                "resource": basic,
                "filterParameter": "status",
            },
        ],
        "notificationShape": [{"resource": basic}],
    }


def _consent_topic(url: str, *, version: str, date: datetime) -> dict[str, Any]:
    consent = "http://hl7.org/fhir/StructureDefinition/Consent"
    return {
        "resourceType": "SubscriptionTopic",
        "id": CONSENT_TOPIC_ID,
        "url": url,
        "version": version,
        "title": "Patient consent changed",
        "status": "active",
        "date": date,
        "description": "A patient's Consent was created or changed (recorded, withdrawn, restricted). The focus of "
        "each event is the Consent, by reference only: notifications are id-only and never carry its content. "
        "Gateways and consumers drop what they keep of the patient and ask again.",
        "resourceTrigger": [
            {
                "description": "A Consent is created or updated.",
                "resource": consent,
                "supportedInteraction": ["create", "update"],
            }
        ],
        "canFilterBy": [
            {
                "description": "The patient: the IHI as <IHI system>|<IHI>, a bare IHI, or Patient/<IHI>. "
                "Without it the subscription needs the admin scope.",
                "resource": consent,
                "filterParameter": "patient",
            }
        ],
        "notificationShape": [{"resource": consent}],
    }


def _parts(element: dict[str, Any]) -> list[dict[str, Any]]:
    """A backbone element of the R5 topic as the sub-extensions of its cross-version extension."""
    parts: list[dict[str, Any]] = []
    for name, value in element.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append({"url": name, _PARTS[name]: item})
    return parts


def topic_basic(url: str, *, version: str, date: datetime, topic: str = TOPIC_ID) -> dict[str, Any]:
    """The topic in the Backport IG's R4 representation: a ``Basic`` carrying the R5 cross-version extensions."""
    r5 = topic_document(url, version=version, date=date, topic=topic)
    extensions = [{"url": f"{CROSS_VERSION}.{name}", kind: r5[name]} for name, kind in _TOP_LEVEL if name in r5]
    for name in _BACKBONES:
        extensions += [{"url": f"{CROSS_VERSION}.{name}", "extension": _parts(e)} for e in r5.get(name, [])]
    return {
        "resourceType": "Basic",
        "id": topic,
        "extension": extensions,
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
    }
