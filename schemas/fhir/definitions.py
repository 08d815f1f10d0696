"""The conformance resources the server publishes: the RegistryRecord profile, one StructureDefinition
per extension, the code systems and value sets they bind to, the custom search parameters and the
OperationDefinition of ``Patient/$locate``.

Everything is generated from the tables below and the enums of ``schemas.types``, so the published
definitions and the values the server accepts cannot drift apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from schemas.discovery import GatewayProblem
from schemas.errors import ERRORS, ErrorCode
from schemas.fhir.canonical import (
    BROKER_OUTCOME,
    EXT_BROKER_SOURCE,
    EXT_CAPABILITY_STATEMENT,
    EXT_CLIENT_ID,
    EXT_FALLBACK,
    EXT_JURISDICTION,
    EXT_LOCATE_CHAIN,
    EXT_REASON,
    EXT_REGISTRATION_ACTOR,
    EXT_REGISTRATION_CHANGE,
    EXT_SEARCH_STYLE,
    EXT_SERVICE,
    EXT_SERVICE_KIND,
    EXT_STATUS,
    EXT_TYPE,
    EXT_UNRESOLVED_SERVICE,
    IEF_ERROR,
    LOCATE_OPERATION,
    REGISTRY_RECORD,
    UNRESOLVED_REASON,
    Canonicals,
)
from schemas.fhir.record import BASIC_CODE, BASIC_CODE_SYSTEM, REFUSED_ELEMENTS
from schemas.fhir.subscription import EXT_SECRET, STATS_EXTENSIONS
from schemas.types import IHI_SYSTEM, RecordStatus, RecordType, SearchStyle, ServiceKind, UnresolvedReason

__all__ = ("FHIR_VERSION", "conformance_resources")

FHIR_VERSION = "4.0.1"

_HL7 = "http://hl7.org/fhir/StructureDefinition"


@dataclass(frozen=True, slots=True)
class _Terminology:
    """A code system and the value set of all its codes (same id, same name)."""

    id: str
    name: str
    title: str
    description: str
    concepts: tuple[tuple[str, str, str], ...]  # code, display, definition


def _concepts(kind: type[enum.StrEnum], meaning: dict[Any, tuple[str, str]]) -> tuple[tuple[str, str, str], ...]:
    missing = set(kind) - set(meaning)
    assert not missing, f"no definition for {sorted(missing)}"
    return tuple((str(member), *meaning[member]) for member in kind)


_TERMINOLOGIES = (
    _Terminology(
        "registry-record-status",
        "RegistryRecordStatus",
        "Registry record status",
        "Lifecycle status of a registry record. Every change is kept; records are never deleted.",
        _concepts(
            RecordStatus,
            {
                RecordStatus.ACTIVE: (
                    "Active",
                    "The service holds (or knows of) data for the patient; routes discovery.",
                ),
                RecordStatus.REMOVED: (
                    "Removed",
                    "The service no longer holds data for the patient; kept for history.",
                ),
                RecordStatus.ARCHIVED: (
                    "Archived",
                    "The service's data for the patient is archived; kept, not routed.",
                ),
            },
        ),
    ),
    _Terminology(
        "registry-record-type",
        "RegistryRecordType",
        "Registry record type",
        "What a registry record points at.",
        _concepts(
            RecordType,
            {
                RecordType.RECORD: ("Record", "The service holds imaging data for the patient."),
                RecordType.REGISTRY: (
                    "Registry",
                    "The service is a registry to ask about the patient (a federation hop).",
                ),
            },
        ),
    ),
    _Terminology(
        "service-kind",
        "ServiceKind",
        "Service kind",
        "Kind of a member service of the registry's directory.",
        _concepts(
            ServiceKind,
            {
                ServiceKind.GATEWAY: (
                    "Gateway",
                    "Holds imaging and answers ImagingStudy and DocumentReference searches.",
                ),
                ServiceKind.REGISTRY: ("Registry", "Another registry, asked about patients by federation hops."),
            },
        ),
    ),
    _Terminology(
        "search-style",
        "SearchStyle",
        "Search style",
        "How the broker phrases a patient search to a gateway.",
        _concepts(
            SearchStyle,
            {
                SearchStyle.IEF: ("IEF", "IEF standard: patient.identifier=<IHI system>|<IHI>."),
                SearchStyle.HARMONY: ("Harmony", "Harmony style: patient=<id>."),
            },
        ),
    ),
    _Terminology(
        BROKER_OUTCOME,
        "BrokerOutcome",
        "Broker outcome",
        "Why a gateway contributed nothing, or not everything, to a broker search (ImagingStudy, "
        "DocumentReference): the code of each issue of the search's OperationOutcome entry.",
        _concepts(
            GatewayProblem,
            {
                GatewayProblem.TIMEOUT: ("Timeout", "The gateway did not answer within its timeout or the deadline."),
                GatewayProblem.UNREACHABLE: ("Unreachable", "No connection could be made to the gateway."),
                GatewayProblem.ERROR_RESPONSE: ("Error response", "The gateway answered with an HTTP error status."),
                GatewayProblem.INVALID_RESPONSE: (
                    "Invalid response",
                    "The answer was not FHIR JSON, not a searchset Bundle, or held invalid resources.",
                ),
                GatewayProblem.TOO_LARGE: ("Too large", "The answer was larger than the broker accepts."),
                GatewayProblem.UNAUTHORIZED: (
                    "Unauthorized",
                    "The gateway refused the broker's credentials, or none could be obtained from it.",
                ),
                GatewayProblem.CIRCUIT_OPEN: (
                    "Circuit open",
                    "The gateway failed repeatedly; it was skipped without waiting and will be tried again later.",
                ),
                GatewayProblem.SKIPPED: (
                    "Skipped",
                    "The gateway was not asked: not a member here, no credentials, disabled, or no time left.",
                ),
                GatewayProblem.UNRESOLVED: ("Unresolved", "A federation hop for the patient could not be followed."),
                GatewayProblem.INCOMPLETE: (
                    "Incomplete",
                    "The gateway has more matches than it returned (it pages, or `_count` capped it).",
                ),
            },
        ),
    ),
    _Terminology(
        UNRESOLVED_REASON,
        "FederationUnresolvedReason",
        "Federation unresolved reason",
        "Why a registry a look-up was referred to could not be followed (federation hops, Patient/$locate).",
        _concepts(
            UnresolvedReason,
            {
                UnresolvedReason.TIMEOUT: ("Timeout", "The registry did not answer in the time left of the look-up."),
                UnresolvedReason.UNREACHABLE: ("Unreachable", "No connection could be made to the registry."),
                UnresolvedReason.ERROR_RESPONSE: ("Error response", "The registry answered with an error status."),
                UnresolvedReason.INVALID_RESPONSE: (
                    "Invalid response",
                    "The registry's answer was not a valid record list, or records in it were invalid and dropped.",
                ),
                UnresolvedReason.TOO_LARGE: ("Too large", "The registry's answer was over the response size limit."),
                UnresolvedReason.UNAUTHORIZED: (
                    "Unauthorized",
                    "No token could be obtained from the registry, or it refused this registry's token.",
                ),
                UnresolvedReason.LOOP: (
                    "Loop",
                    "The referral leads back to a registry already on its own chain; not followed.",
                ),
                UnresolvedReason.HOP_LIMIT: ("Hop limit", "The registry is further away than the hop limit."),
                UnresolvedReason.BUDGET: ("Budget", "The look-up's budget of requests to registries was spent."),
                UnresolvedReason.DEADLINE: ("Deadline", "The look-up's deadline passed before the registry was asked."),
                UnresolvedReason.NOT_A_MEMBER: (
                    "Not a member",
                    "This registry cannot ask it: not in its services directory, disabled, not a registry, "
                    "or without credentials.",
                ),
                UnresolvedReason.FAILED_RECENTLY: (
                    "Failed recently",
                    "The registry failed a moment ago and is not asked again until that is forgotten.",
                ),
            },
        ),
    ),
    _Terminology(
        BASIC_CODE_SYSTEM,
        "BasicResourceType",
        "IEF Basic resource types",
        "Codes of Basic.code for the IEF resources carried by Basic.",
        ((BASIC_CODE, "IEF registry record", "A registry record: a service holds or knows data for a patient."),),
    ),
    _Terminology(
        IEF_ERROR,
        "IefError",
        "Error codes",
        "What went wrong with a request, in each issue of its OperationOutcome (details.coding); each code has one "
        "HTTP status.",
        _concepts(ErrorCode, {code: (kind.display, kind.definition) for code, kind in ERRORS.items()}),
    ),
)


@dataclass(frozen=True, slots=True)
class _Extension:
    """A simple extension (``value_type``), or a complex one whose ``parts`` are repeated sub-extensions."""

    id: str
    name: str
    title: str
    description: str
    context: tuple[str, ...]
    value_type: str
    value_set: str | None = None
    parts: tuple[tuple[str, str, str], ...] = ()  # url, value type, definition (each 1..*)


_EXTENSIONS = (
    _Extension(
        EXT_SERVICE,
        "RegistryRecordService",
        "Registry record service",
        "The service (gateway or registry) that holds or knows the data: its IEF service ID, a UUID or ULID, "
        "with the IEF service ID system. The same service is the Endpoint with that id.",
        ("Basic",),
        "Identifier",
    ),
    _Extension(
        EXT_STATUS,
        "RegistryRecordStatus",
        "Registry record status",
        "Lifecycle status of the record; only active records route discovery.",
        ("Basic",),
        "code",
        "registry-record-status",
    ),
    _Extension(
        EXT_TYPE,
        "RegistryRecordType",
        "Registry record type",
        "Whether the service holds the data (record) or is a registry to ask (registry).",
        ("Basic",),
        "code",
        "registry-record-type",
    ),
    _Extension(
        EXT_REASON,
        "RegistryRecordReason",
        "Registry record reason",
        "Why the record was removed or archived: entered-in-error, withdrawn, legal-hold, decommissioned, or text "
        "(1 to 200 characters). A removal or archive by the operator (admin) with or without a reason is the "
        "operator's decision: a gateway cannot change the record back (409 operator-decision).",
        ("Basic",),
        "string",
    ),
    _Extension(
        EXT_REGISTRATION_CHANGE,
        "RegistrationChange",
        "Registration change",
        "On a notification's event entry and a registry record's history entry: what the change to the registry "
        "record was: created, registered (an active record registered again: new imaging at a service that "
        "already held some), status-changed, moved "
        "(to another service: services move), or updated (a type change).",
        ("Bundle.entry",),
        "code",
    ),
    _Extension(
        EXT_REGISTRATION_ACTOR,
        "RegistrationActor",
        "Registration actor",
        "On a registry record's history entry (Basic/{id}/_history, Basic/_history): who made that version, as "
        "GET /registry/records/{ihi}/history and the AuditEvent name it: the client, the service it is bound to, "
        "and whether it acted as the operator (admin). Absent on versions recorded before actors were kept.",
        ("Bundle.entry",),
        "",
        parts=(
            ("client", "string", "The client ID that made the change."),
            ("service", "Identifier", "The service the client is bound to: its IEF service ID."),
            ("admin", "boolean", "Whether the client acted as the operator (admin)."),
        ),
    ),
    _Extension(
        EXT_JURISDICTION,
        "EndpointJurisdiction",
        "Endpoint jurisdiction",
        "Where the member service is: ACT, NSW, NT, QLD, SA, TAS, VIC, WA, or national.",
        ("Endpoint",),
        "code",
    ),
    _Extension(
        EXT_CAPABILITY_STATEMENT,
        "EndpointCapabilityStatement",
        "Endpoint capability statement",
        "Where the member service's FHIR CapabilityStatement is (an http or https URL).",
        ("Endpoint",),
        "url",
    ),
    _Extension(
        EXT_FALLBACK,
        "EndpointFallback",
        "Endpoint fallback",
        "How to get imaging from this service by other means while it is not on FHIR (for example: phone the "
        "practice).",
        ("Endpoint",),
        "string",
    ),
    _Extension(
        EXT_CLIENT_ID,
        "EndpointClientId",
        "Endpoint client ID",
        "The client ID this member service gave this registry: the registry authenticates to it with "
        "private_key_jwt. Only the operator (admin) sees and sets it.",
        ("Endpoint",),
        "string",
    ),
    _Extension(
        EXT_SERVICE_KIND,
        "EndpointServiceKind",
        "Endpoint service kind",
        "Whether the member service is a gateway or a registry.",
        ("Endpoint",),
        "code",
        "service-kind",
    ),
    _Extension(
        EXT_SEARCH_STYLE,
        "EndpointSearchStyle",
        "Endpoint search style",
        "How the broker phrases patient searches to this gateway.",
        ("Endpoint",),
        "code",
        "search-style",
    ),
    _Extension(
        EXT_SECRET,
        "SubscriptionSigningSecret",
        "Subscription signing secret",
        "The Standard Webhooks secret (whsec_ followed by base64 of 24 to 64 random bytes) that signs this "
        "subscription's notifications (webhook-id, webhook-timestamp, webhook-signature headers). Given on create or "
        "update, or generated by the server and returned once, in the create response; never shown afterwards. "
        "A new value keeps the old one signing beside it for a while (rotation).",
        ("Subscription.channel",),
        "string",
    ),
    *(
        _Extension(ext_id, name, title, description, ("Parameters.parameter",), value_type)
        for ext_id, name, title, description, value_type in zip(
            STATS_EXTENSIONS,
            (
                "SubscriptionDeliveredCount",
                "SubscriptionPendingCount",
                "SubscriptionFailedAttempts",
                "SubscriptionLastError",
                "SubscriptionLastSuccess",
            ),
            ("Delivered events", "Pending events", "Failed attempts", "Last delivery error", "Last success"),
            (
                "Events of the subscription delivered with a 2xx (on the subscription parameter of $status).",
                "Events numbered but not yet delivered, exhausted or cancelled.",
                "Notification attempts that failed (timeouts, refused connections, non-2xx answers).",
                "What the last failed attempt met (an HTTP status or an error class; never a header value).",
                "When a notification of the subscription last got a 2xx.",
            ),
            ("decimal", "decimal", "decimal", "string", "instant"),
            strict=True,
        )
    ),
    _Extension(
        EXT_BROKER_SOURCE,
        "BrokerSource",
        "Broker source",
        "A member service (its IEF service ID) that returned this resource to a broker search, once per "
        "service that had it (the first is the one meta.source and the entry's fullUrl name); on an "
        "OperationOutcome issue, the service the issue is about.",
        ("ImagingStudy", "DocumentReference", "OperationOutcome.issue"),
        "Identifier",
    ),
    _Extension(
        EXT_LOCATE_CHAIN,
        "LocateChain",
        "Locate chain",
        "The registries a Patient/$locate result was learned through, in the order the referrals were followed: "
        "the first is the registry this one referred to, the last the registry that holds the record (on an "
        "Endpoint) or that made the referral (on an OperationOutcome issue). Absent: this registry's own.",
        ("Endpoint", "OperationOutcome.issue"),
        "",
        parts=(("registry", "Identifier", "One registry of the chain: its IEF service ID (service ID system)."),),
    ),
    _Extension(
        EXT_UNRESOLVED_SERVICE,
        "UnresolvedService",
        "Unresolved service",
        "The registry a Patient/$locate issue is about: its IEF service ID (service ID system).",
        ("OperationOutcome.issue",),
        "Identifier",
    ),
)

_SEARCH_PARAMETERS = (
    ("registryrecord-status", "status", EXT_STATUS, "Registry records with this status (default: active only)."),
    ("registryrecord-service", "service", EXT_SERVICE, "Registry records of this service (IEF service ID)."),
)


def _common(canon: Canonicals, resource_type: str, resource_id: str, version: str) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": resource_id,
        "url": canon.of(resource_type, resource_id),
        "version": version,
    }


def _terminology(canon: Canonicals, term: _Terminology, version: str) -> list[dict[str, Any]]:
    code_system = {
        **_common(canon, "CodeSystem", term.id, version),
        "name": term.name,
        "title": term.title,
        "status": "active",
        "description": term.description,
        "caseSensitive": True,
        "valueSet": canon.value_set(term.id),
        "content": "complete",
        "count": len(term.concepts),
        "concept": [
            {"code": code, "display": display, "definition": definition} for code, display, definition in term.concepts
        ],
    }
    value_set = {
        **_common(canon, "ValueSet", term.id, version),
        "name": term.name,
        "title": term.title,
        "status": "active",
        "description": f"Every code of {canon.code_system(term.id)}.",
        "compose": {"include": [{"system": canon.code_system(term.id)}]},
    }
    return [code_system, value_set]


def _structure(canon: Canonicals, resource_id: str, version: str, **fields: Any) -> dict[str, Any]:
    return {
        **_common(canon, "StructureDefinition", resource_id, version),
        "status": "active",
        "fhirVersion": FHIR_VERSION,
        "abstract": False,
        "derivation": "constraint",
        **fields,
    }


def _value(canon: Canonicals, ext: _Extension) -> list[dict[str, Any]]:
    """The differential of a simple extension: no sub-extensions, one value."""
    value: dict[str, Any] = {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1}
    value["type"] = [{"code": ext.value_type}]
    if ext.value_set:
        value["binding"] = {"strength": "required", "valueSet": canon.value_set(ext.value_set)}
    if ext.value_type == "Identifier":
        value["patternIdentifier"] = {"system": canon.service_id_system}
    return [
        {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": canon.extension(ext.id)},
        value,
    ]


def _parts(canon: Canonicals, ext: _Extension) -> list[dict[str, Any]]:
    """The differential of a complex extension: its sub-extensions (sliced by url), no value."""
    elements: list[dict[str, Any]] = [
        {
            "id": "Extension.extension",
            "path": "Extension.extension",
            "slicing": {"discriminator": [{"type": "value", "path": "url"}], "ordered": True, "rules": "closed"},
            "min": 1,
        }
    ]
    for url, value_type, definition in ext.parts:
        part = f"Extension.extension:{url}"
        value: dict[str, Any] = {"id": f"{part}.value[x]", "path": "Extension.extension.value[x]", "min": 1}
        value["type"] = [{"code": value_type}]
        if value_type == "Identifier":
            value["patternIdentifier"] = {"system": canon.service_id_system}
        elements += [
            {
                "id": part,
                "path": "Extension.extension",
                "sliceName": url,
                "definition": definition,
                "min": 1,
                "max": "*",
            },
            {"id": f"{part}.extension", "path": "Extension.extension.extension", "max": "0"},
            {"id": f"{part}.url", "path": "Extension.extension.url", "fixedUri": url},
            value,
        ]
    elements += [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": canon.extension(ext.id)},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"},
    ]
    return elements


def _extension(canon: Canonicals, ext: _Extension, version: str) -> dict[str, Any]:
    return _structure(
        canon,
        ext.id,
        version,
        name=ext.name,
        title=ext.title,
        description=ext.description,
        kind="complex-type",
        context=[{"type": "element", "expression": context} for context in ext.context],
        type="Extension",
        baseDefinition=f"{_HL7}/Extension",
        differential={
            "element": [
                {"id": "Extension", "path": "Extension", "short": ext.title, "definition": ext.description},
                *(_parts(canon, ext) if ext.parts else _value(canon, ext)),
            ]
        },
    )


def _slice(canon: Canonicals, name: str, extension_id: str, *, required: bool, missing: str | None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "id": f"Basic.extension:{name}",
        "path": "Basic.extension",
        "sliceName": name,
        "min": 1 if required else 0,
        "max": "1",
        "type": [{"code": "Extension", "profile": [canon.extension(extension_id)]}],
    }
    if missing:
        element["meaningWhenMissing"] = missing
    return element


def _registry_record(canon: Canonicals, version: str) -> dict[str, Any]:
    refused = [{"id": f"Basic.{name}", "path": f"Basic.{name}", "max": "0"} for name in REFUSED_ELEMENTS]
    description = (
        "A registry record: the service named in the service extension holds (type record) or knows of "
        "(type registry) imaging for the patient whose IHI is the subject identifier. One record per "
        "(IHI, service); writes are idempotent on that pair."
    )
    return _structure(
        canon,
        REGISTRY_RECORD,
        version,
        name=REGISTRY_RECORD,
        title="IEF registry record",
        description=description,
        kind="resource",
        type="Basic",
        baseDefinition=f"{_HL7}/Basic",
        differential={
            "element": [
                {"id": "Basic", "path": "Basic", "short": "IEF registry record", "definition": description},
                *refused,
                {
                    "id": "Basic.extension",
                    "path": "Basic.extension",
                    "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"},
                    "min": 1,
                },
                _slice(canon, "service", EXT_SERVICE, required=True, missing=None),
                _slice(canon, "status", EXT_STATUS, required=False, missing="The record is active."),
                _slice(canon, "type", EXT_TYPE, required=False, missing="The record is of type record."),
                _slice(canon, "reason", EXT_REASON, required=False, missing="No reason was given."),
                {
                    "id": "Basic.code",
                    "path": "Basic.code",
                    "patternCodeableConcept": {
                        "coding": [{"system": canon.code_system(BASIC_CODE_SYSTEM), "code": BASIC_CODE}]
                    },
                },
                {
                    "id": "Basic.subject",
                    "path": "Basic.subject",
                    "min": 1,
                    "type": [{"code": "Reference", "targetProfile": [f"{_HL7}/Patient"]}],
                },
                {"id": "Basic.subject.reference", "path": "Basic.subject.reference", "max": "0"},
                {"id": "Basic.subject.identifier", "path": "Basic.subject.identifier", "min": 1},
                {
                    "id": "Basic.subject.identifier.system",
                    "path": "Basic.subject.identifier.system",
                    "min": 1,
                    "patternUri": IHI_SYSTEM,
                },
                {"id": "Basic.subject.identifier.value", "path": "Basic.subject.identifier.value", "min": 1},
            ]
        },
    )


def _search_parameter(
    canon: Canonicals, sp_id: str, code: str, extension_id: str, description: str, version: str
) -> dict[str, Any]:
    return {
        **_common(canon, "SearchParameter", sp_id, version),
        "name": code,
        "status": "active",
        "description": description,
        "code": code,
        "base": ["Basic"],
        "type": "token",
        "expression": f"Basic.extension('{canon.extension(extension_id)}').value",
    }


def _locate(canon: Canonicals, version: str) -> dict[str, Any]:
    """The OperationDefinition of ``Patient/$locate``."""
    return {
        **_common(canon, "OperationDefinition", LOCATE_OPERATION, version),
        "name": "PatientLocate",
        "title": "Locate a patient's imaging",
        "status": "active",
        "kind": "operation",
        "description": (
            "The gateways that hold imaging for a patient (IHI), as Endpoint resources. The registry follows its "
            "registry-type records to the registries they name (and theirs in turn, iteratively, within its hop "
            "limit, request budget and deadline); each Endpoint learned through other registries carries the "
            "chain in the locate-chain extension. An OperationOutcome entry (search.mode outcome) names every "
            "registry that could not be followed, with a reason from the federation-unresolved-reason code system."
        ),
        "affectsState": False,
        "code": "locate",
        "resource": ["Patient"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            {
                "name": "identifier",
                "use": "in",
                "min": 1,
                "max": "1",
                "documentation": f"The patient's IHI: {IHI_SYSTEM}|<IHI>, or the bare IHI.",
                "type": "string",
                "searchType": "token",
            },
            {
                "name": "follow",
                "use": "in",
                "min": 0,
                "max": "1",
                "documentation": "false: only this registry's own records (referrals are not followed). Default true.",
                "type": "boolean",
            },
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "A searchset Bundle: one Endpoint per gateway (search.mode match), and one "
                "OperationOutcome (search.mode outcome) when a registry could not be followed.",
                "type": "Bundle",
            },
        ],
    }


def conformance_resources(canon: Canonicals, version: str) -> list[dict[str, Any]]:
    """Every conformance resource the server publishes, for one canonical base and release."""
    resources = [_registry_record(canon, version)]
    resources += [_extension(canon, ext, version) for ext in _EXTENSIONS]
    for term in _TERMINOLOGIES:
        resources += _terminology(canon, term, version)
    resources += [_search_parameter(canon, *row, version) for row in _SEARCH_PARAMETERS]
    resources.append(_locate(canon, version))
    return resources
