"""FHIR R4 AuditEvent, aligned with IHE Basic Audit Log Patterns (BALP), and its searchset Bundle.

One stored audit row becomes one AuditEvent:

- ``type`` rest; ``subtype`` the RESTful interaction; ``action`` C/R/U/D/E; ``recorded``;
  ``outcome`` 0/4/8/12 with ``outcomeDesc`` carrying the HTTP status (and the error, if any);
- ``agent``: the client (DICOM "Source Role ID", ``requestor``; ``who.identifier`` its client ID,
  ``altId`` the service ID it is bound to, ``policy`` the token's ``jti``, ``network`` its address)
  and this server (DICOM "Destination Role ID", ``who.identifier`` its service ID);
- ``source.observer``: this registry (its service ID), an application server;
- ``entity``: each patient (IHI, role Patient), each record (``Basic/<id>``, role Domain Resource),
  or, when an event names more than ``LISTED_ENTITIES`` of either (a batch), one entity for all
  the patients and one for all the records, their IHIs and ids space-separated in ``detail``; the
  request (BALP's X-Request-Id entity type; a calling peer's ``IEF-Request-Id`` too), and for
  searches and operations the query as sent (base64, role Query);
- privacy (DESIGN §12): ``purposeOfEvent`` the purpose of use the requester stated (v3
  PurposeOfUse), an agent for the clinician it acted for (``who.identifier`` the HPI-I, role
  healthcare provider, ``requestor``), and in ``outcomeDesc`` how many records were withheld and
  whether anything was disclosed by break-glass (counts, never what).
"""

from __future__ import annotations

import base64
from datetime import UTC
from typing import TYPE_CHECKING, Any

from schemas.privacy import HPII_SYSTEM, PURPOSE_SYSTEM
from schemas.types import IHI_SYSTEM, is_ascii_digits

if TYPE_CHECKING:
    from schemas.audit import StoredAuditEvent

__all__ = (
    "BALP_ENTITY_TYPE",
    "LISTED_ENTITIES",
    "audit_event",
    "audit_searchset",
    "check_r4b",
    "client_id_system",
    "service_id_system",
)

_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
"""BALP's code system for the X-Request-Id entity type (code ``XrequestId``)."""

_QUERY_INTERACTIONS = frozenset({"search-type", "search-system", "operation", "history-type", "history-instance"})
_OUTCOME_TEXT = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}


def client_id_system(canonical_base: str) -> str:
    """Identifier system of this registry's client IDs."""
    return f"{canonical_base.rstrip('/')}/sid/client-id"


def service_id_system(canonical_base: str) -> str:
    """Identifier system of IEF service IDs (gateways, registries, this server)."""
    return f"{canonical_base.rstrip('/')}/sid/service-id"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _network(address: str) -> dict[str, str]:
    # 2 = IP address; anything else (a socket path) is recorded as a name (1 = machine name).
    kind = "2" if is_ascii_digits(address.replace(".", "")) or ":" in address else "1"
    return {"address": address, "type": kind}


def _client_agent(event: StoredAuditEvent, clients: str) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(_DCM, "110153", "Source Role ID")]},
        "requestor": True,
    }
    if event.client_id:
        agent["who"] = {"identifier": {"system": clients, "value": event.client_id}, "display": event.client_id}
    else:
        agent["who"] = {"display": "anonymous (no verified token)"}
    if event.client_service:
        agent["altId"] = event.client_service
    if event.token_id:
        agent["policy"] = [event.token_id]
    if event.client_address:
        agent["network"] = _network(event.client_address)
    return agent


LISTED_ENTITIES = 20
"""Most patients (and, separately, records) an AuditEvent names one entity each; above, one entity lists them all.

One entity per item is about 300 bytes of JSON; a 10,000-item batch rendered that way was a 6 MB
AuditEvent. Listed, an item costs its IHI or id and a space. The stored row names every patient
either way, so a search by patient finds the event.
"""

_PATIENT_ENTITY = {"type": _coding(_ENTITY_TYPE, "1", "Person"), "role": _coding(_OBJECT_ROLE, "1", "Patient")}
_RECORD_ENTITY = {
    "type": _coding(_ENTITY_TYPE, "2", "System Object"),
    "role": _coding(_OBJECT_ROLE, "4", "Domain Resource"),
}


def _patients(patients: tuple[str, ...]) -> list[dict[str, Any]]:
    if len(patients) > LISTED_ENTITIES:
        return [
            {
                **_PATIENT_ENTITY,
                "description": f"{len(patients)} patients: their IHIs ({IHI_SYSTEM}) in detail, space-separated",
                "detail": [{"type": "ihi-list", "valueString": " ".join(patients)}],
            }
        ]
    return [
        {"what": {"identifier": {"system": IHI_SYSTEM, "value": ihi}, "type": "Patient"}, **_PATIENT_ENTITY}
        for ihi in patients
    ]


def _records(records: tuple[str, ...]) -> list[dict[str, Any]]:
    if len(records) > LISTED_ENTITIES:
        return [
            {
                **_RECORD_ENTITY,
                "description": f"{len(records)} registry records: their Basic ids in detail, space-separated",
                "detail": [{"type": "basic-id-list", "valueString": " ".join(records)}],
            }
        ]
    return [{"what": {"reference": f"Basic/{record_id}"}, **_RECORD_ENTITY} for record_id in records]


def _entities(event: StoredAuditEvent) -> list[dict[str, Any]]:
    entities = [*_patients(event.patients), *_records(event.records)]
    entities.append(
        {
            "what": {"identifier": {"value": event.request_id}},
            "type": _coding(BALP_ENTITY_TYPE, "XrequestId"),
            "description": "X-Request-Id of this request",
        }
    )
    if event.peer_request_id:
        entities.append(
            {
                "what": {"identifier": {"value": event.peer_request_id}},
                "type": _coding(BALP_ENTITY_TYPE, "XrequestId"),
                "description": "IEF-Request-Id sent by the calling peer",
            }
        )
    if event.interaction in _QUERY_INTERACTIONS:
        raw = f"{event.method} {event.path}" + (f"?{event.query}" if event.query else "")
        entities.append(
            {
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                "role": _coding(_OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(raw.encode()).decode(),
            }
        )
    return entities


def audit_event(event: StoredAuditEvent, *, canonical_base: str) -> dict[str, Any]:
    """The R4 AuditEvent of one stored audit row."""
    servers = service_id_system(canonical_base)
    this_server = {"identifier": {"system": servers, "value": event.observer}, "display": "ief-registry"}
    outcome_desc = f"HTTP {event.status} ({_OUTCOME_TEXT.get(event.outcome, 'unknown')})"
    if event.detail:
        outcome_desc += f": {event.detail}"
    if event.withheld:
        outcome_desc += f"; privacy: {event.withheld} withheld"
    if event.break_glass:
        outcome_desc += "; privacy: disclosed by break-glass (ETREAT)"
    purpose = [{"coding": [_coding(PURPOSE_SYSTEM, event.purpose_of_use)]}] if event.purpose_of_use else []
    practitioner = (
        [
            {
                "type": {"coding": [_coding(_ROLE_CLASS, "PROV", "healthcare provider")]},
                "who": {"identifier": {"system": HPII_SYSTEM, "value": event.practitioner}},
                "requestor": True,
                **({"purposeOfUse": purpose} if purpose else {}),
            }
        ]
        if event.practitioner
        else []
    )
    resource = {
        "resourceType": "AuditEvent",
        "id": event.event_id,
        "type": _coding(_EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(_INTERACTION, event.interaction)],
        "action": event.action,
        "recorded": event.recorded.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "outcome": str(event.outcome),
        "outcomeDesc": outcome_desc,
        "agent": [
            _client_agent(event, client_id_system(canonical_base)),
            {
                "type": {"coding": [_coding(_DCM, "110152", "Destination Role ID")]},
                "who": this_server,
                "requestor": False,
            },
            *practitioner,
        ],
        "source": {"observer": this_server, "type": [_coding(_SOURCE_TYPE, "4", "Application Server")]},
        "entity": _entities(event),
    }
    if purpose:
        resource["purposeOfEvent"] = purpose
    return resource


def audit_searchset(
    events: list[StoredAuditEvent], *, canonical_base: str, resource_base: str, self_url: str, next_url: str | None
) -> dict[str, Any]:
    """A ``searchset`` Bundle of AuditEvents, newest first, with ``self`` and ``next`` links (no total)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if events:  # FHIR forbids empty arrays
        bundle["entry"] = [
            {
                "fullUrl": f"{resource_base}/AuditEvent/{event.event_id}",
                "resource": audit_event(event, canonical_base=canonical_base),
                "search": {"mode": "match"},
            }
            for event in events
        ]
    return bundle


def check_r4b(resource: dict[str, Any]) -> None:
    """Parse a resource with the fhir.resources R4B models (raises ``ValueError`` when it is not valid R4)."""
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
