"""Canonical URLs of the IEF conformance resources, and the identifier systems the facade uses.

Every canonical hangs off one configurable base (``fhir.canonical_base``): profiles and extensions
under ``StructureDefinition/``, terminologies under ``CodeSystem/`` and ``ValueSet/``, custom search
parameters under ``SearchParameter/``, identifier systems under ``sid/``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "BROKER_OUTCOME",
    "CONNECTION_TYPE_SYSTEM",
    "EXT_BROKER_SOURCE",
    "EXT_CAPABILITY_STATEMENT",
    "EXT_CLIENT_ID",
    "EXT_EVENT_WITHHELD",
    "EXT_FALLBACK",
    "EXT_JURISDICTION",
    "EXT_LOCATE_CHAIN",
    "EXT_REASON",
    "EXT_REGISTRATION_ACTOR",
    "EXT_REGISTRATION_CHANGE",
    "EXT_SEARCH_STYLE",
    "EXT_SERVICE",
    "EXT_SERVICE_KIND",
    "EXT_STATUS",
    "EXT_TYPE",
    "EXT_UNRESOLVED_SERVICE",
    "HL7_SEARCH_PARAMETER",
    "IEF_ERROR",
    "LOCATE_OPERATION",
    "REGISTRY_RECORD",
    "RESOURCE_TYPES_SYSTEM",
    "UNRESOLVED_REASON",
    "Canonicals",
)

REGISTRY_RECORD = "RegistryRecord"
"""Id of the profile of ``Basic`` that carries a registry record."""

EXT_SERVICE = "registry-record-service"
EXT_STATUS = "registry-record-status"
EXT_TYPE = "registry-record-type"
EXT_REASON = "registry-record-reason"
"""Why a record was removed or archived (a code of ``schemas.records.REASONS`` or text)."""
EXT_REGISTRATION_CHANGE = "registration-change"
"""On a notification's event entry: what the change was (created, registered, status-changed, moved)."""
EXT_REGISTRATION_ACTOR = "registration-actor"
"""On a history entry of a registry record: who made the change (client, bound service, admin)."""
EXT_JURISDICTION = "endpoint-jurisdiction"
EXT_CAPABILITY_STATEMENT = "endpoint-capability-statement"
EXT_FALLBACK = "endpoint-fallback"
EXT_CLIENT_ID = "endpoint-client-id"
EXT_SERVICE_KIND = "endpoint-service-kind"
EXT_SEARCH_STYLE = "endpoint-search-style"
EXT_BROKER_SOURCE = "broker-source"
"""Extension naming a member service (IEF service ID) that a broker search result came from or concerns."""
BROKER_OUTCOME = "broker-outcome"
"""Id of the code system of the broker's per-gateway problems (``schemas.discovery.GatewayProblem``)."""
EXT_LOCATE_CHAIN = "locate-chain"
EXT_UNRESOLVED_SERVICE = "unresolved-service"
EXT_EVENT_WITHHELD = "notification-event-withheld"
"""Extension on a ``notification-event`` of ``$events``: the privacy decision point withheld the event."""

IEF_ERROR = "ief-error"
"""Id of the code system (and value set) of the error codes (``schemas.errors``)."""

LOCATE_OPERATION = "Patient-locate"
"""Id of the OperationDefinition of ``Patient/$locate``."""
UNRESOLVED_REASON = "federation-unresolved-reason"
"""Id of the code system (and value set) of the reasons a federation hop was not followed."""

CONNECTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"
HL7_SEARCH_PARAMETER = "http://hl7.org/fhir/SearchParameter"
"""Where the search parameters FHIR itself defines live (``…/Basic-patient``, ``…/Resource-id``)."""


@dataclass(frozen=True, slots=True)
class Canonicals:
    """The canonical URLs of one deployment, all under ``base``."""

    base: str

    @classmethod
    def under(cls, base: str) -> Canonicals:
        """The canonicals of a configured base (``fhir.canonical_base``; a trailing slash is dropped)."""
        return cls(base.rstrip("/"))

    def of(self, resource_type: str, resource_id: str) -> str:
        """The canonical URL of one conformance resource."""
        return f"{self.base}/{resource_type}/{resource_id}"

    def extension(self, extension_id: str) -> str:
        """The URL of an extension (its StructureDefinition's canonical)."""
        return self.of("StructureDefinition", extension_id)

    def code_system(self, system_id: str) -> str:
        """The canonical URL of a code system."""
        return self.of("CodeSystem", system_id)

    def value_set(self, value_set_id: str) -> str:
        """The canonical URL of a value set."""
        return self.of("ValueSet", value_set_id)

    @property
    def registry_record(self) -> str:
        """The canonical URL of the RegistryRecord profile."""
        return self.of("StructureDefinition", REGISTRY_RECORD)

    @property
    def service_id_system(self) -> str:
        """The identifier system of IEF service IDs (gateways and registries)."""
        return f"{self.base}/sid/service-id"

    def resolve(self, reference: str) -> str:
        """An absolute canonical: ``reference`` itself when absolute, else relative to the base."""
        return reference if "://" in reference else f"{self.base}/{reference}"
