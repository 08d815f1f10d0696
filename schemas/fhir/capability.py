"""What the FHIR facade implements, declared once, and the CapabilityStatement rendered from it.

Each resource the server serves is one ``ResourceCapability``: its interactions, search parameters
(with every query spelling the server accepts for each), profile and operations. The routes take
their accepted query parameters from the same declaration, so the statement lists exactly what is
implemented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.fhir.definitions import FHIR_VERSION

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.fhir.canonical import Canonicals

__all__ = (
    "FORMAT",
    "PAGING",
    "RESULTS",
    "Operation",
    "ResourceCapability",
    "SearchParam",
    "capability_statement",
)

FORMAT = "_format"
"""Accepted by every FHIR route; only JSON is served."""


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as the CapabilityStatement lists it, and the query names that use it.

    ``definition`` is absolute, or relative to the canonical base (``SearchParameter/…``).
    ``spellings`` are the query parameter names accepted for it (modifiers and chains included);
    empty means just ``name``.
    """

    name: str
    type: str
    documentation: str
    definition: str | None = None
    spellings: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        """The query parameter names that search by this parameter."""
        return self.spellings or (self.name,)


PAGING = (
    SearchParam("_count", "number", "Page size (default and maximum set by the operator; 0 returns only the total)."),
    SearchParam("_offset", "number", "Index of the first match of the page (paging; the Bundle links carry it)."),
)
"""Result parameters of every paged search."""

RESULTS = (
    SearchParam(
        "_summary",
        "token",
        "`true` (summary elements), `text`, `data` (all but the narrative), `count` (the total only) or `false`; "
        "a subsetted resource is tagged SUBSETTED.",
        "http://hl7.org/fhir/SearchParameter/Resource-summary",
    ),
    SearchParam(
        "_elements",
        "string",
        "Comma-separated top-level elements to return (id, meta and mandatory elements are always returned).",
        "http://hl7.org/fhir/SearchParameter/Resource-elements",
    ),
    SearchParam("_total", "token", "`none` leaves Bundle.total out; `estimate` and `accurate` give the exact count."),
)
"""Result parameters of every FHIR route (``_pretty`` too); the CapabilityStatement lists them on every search."""


@dataclass(frozen=True, slots=True)
class Operation:
    """A FHIR operation (``$name``) the server implements on a resource type."""

    name: str
    definition: str
    documentation: str = ""


@dataclass(frozen=True, slots=True)
class ResourceCapability:
    """Everything the server does with one resource type."""

    type: str
    documentation: str
    interactions: tuple[str, ...]
    search: tuple[SearchParam, ...] = ()
    profile: str | None = None
    versioning: str = "no-version"
    conditional_update: bool = False
    conditional_create: bool = False
    """``If-None-Exist`` on create (``registry.fhirapi.conditional``): FHIR R4's rules over the resource's search."""
    operations: tuple[Operation, ...] = ()
    supported_profiles: tuple[str, ...] = ()
    instantiates: tuple[str, ...] = ()
    canonical_extensions: tuple[tuple[str, str], ...] = ()
    """Extensions of the resource's entry whose ``valueCanonical`` is a path under the FHIR base
    (the backport IG's topic-canonical extension): (extension URL, path)."""

    def query(self, params: Iterable[SearchParam] | None = None) -> frozenset[str]:
        """Query parameter names a route takes: every spelling of ``params`` (default: all), and ``_format``."""
        chosen = self.search if params is None else tuple(params)
        return frozenset({FORMAT, *(name for param in chosen for name in param.accepted)})


def _resource(canon: Canonicals, cap: ResourceCapability, base_url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if cap.canonical_extensions:
        entry["extension"] = [
            {"url": url, "valueCanonical": f"{base_url}/{path}"} for url, path in cap.canonical_extensions
        ]
    entry["type"] = cap.type
    if cap.profile:
        entry["profile"] = canon.resolve(cap.profile)
    if cap.supported_profiles:
        entry["supportedProfile"] = list(cap.supported_profiles)
    entry["documentation"] = cap.documentation
    if cap.interactions:  # FHIR JSON has no empty arrays (Patient has only an operation)
        entry["interaction"] = [{"code": code} for code in cap.interactions]
    entry["versioning"] = cap.versioning
    entry["readHistory"] = "vread" in cap.interactions
    entry["updateCreate"] = False
    entry["conditionalCreate"] = cap.conditional_create
    entry["conditionalRead"] = "not-supported"
    entry["conditionalUpdate"] = cap.conditional_update
    entry["conditionalDelete"] = "not-supported"
    if cap.search:
        entry["searchParam"] = []
        for param in (*cap.search, *RESULTS):
            rendered: dict[str, Any] = {"name": param.name, "type": param.type, "documentation": param.documentation}
            if param.definition:
                rendered["definition"] = canon.resolve(param.definition)
            entry["searchParam"].append(rendered)
    if cap.operations:
        entry["operation"] = [
            {
                "name": op.name,
                "definition": canon.resolve(op.definition),
                **({"documentation": op.documentation} if op.documentation else {}),
            }
            for op in cap.operations
        ]
    return entry


SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def _security(token_url: str) -> dict[str, Any]:
    """``rest.security``: SMART on FHIR (Backend Services), with its token endpoint in the ``oauth-uris`` extension."""
    return {
        "extension": [{"url": SMART_OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}],
        "cors": False,
        "service": [
            {
                "coding": [{"system": _SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth2 bearer tokens, SMART Backend Services (client credentials, private_key_jwt)",
            }
        ],
        "description": "Every route but metadata, the conformance resources and the discovery documents needs a "
        "bearer token from the token endpoint (discovery: .well-known/smart-configuration under this base) "
        "or a trusted issuer, granting SMART v2 system scopes (v1 spellings accepted).",
    }


def capability_statement(
    capabilities: Iterable[ResourceCapability],
    *,
    canon: Canonicals,
    software_version: str,
    base_url: str,
    token_url: str,
    date: datetime,
) -> dict[str, Any]:
    """The server's CapabilityStatement (kind ``instance``) for the FHIR base ``base_url``."""
    capabilities = tuple(capabilities)
    instantiates = list(dict.fromkeys(url for cap in capabilities for url in cap.instantiates))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "ief-registry",
        "kind": "instance",
        **({"instantiates": instantiates} if instantiates else {}),
        "software": {"name": "ief-registry", "version": software_version},
        "implementation": {"description": "IEF Registry and Broker: FHIR R4 facade", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Registry records (Basic, RegistryRecord profile), the member services (Endpoint), "
                "Patient/$locate (the gateways holding a patient's imaging, federation hops followed), the broker's "
                "ImagingStudy and DocumentReference searches, the audit trail (AuditEvent), subscriptions and "
                "the conformance resources that define them. Query parameters a route does not define are ignored "
                "and reported (a warning in a search Bundle's OperationOutcome entry) unless the request says "
                "`Prefer: handling=strict`, which makes them 400. Every route takes _format (JSON only), _pretty, "
                "_summary, _elements and _total; reads answer ETags and 304 to If-None-Match; creates and updates "
                "honour Prefer: return=minimal|representation|OperationOutcome; every operation takes GET and POST "
                "with a Parameters body; HEAD works wherever GET does.",
                "security": _security(token_url),
                "resource": [_resource(canon, cap, base_url) for cap in capabilities],
            }
        ],
    }
