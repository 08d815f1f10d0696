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

__all__ = ("FORMAT", "PAGING", "Operation", "ResourceCapability", "SearchParam", "capability_statement")

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
    entry["readHistory"] = False
    entry["updateCreate"] = False
    entry["conditionalCreate"] = False
    entry["conditionalRead"] = "not-supported"
    entry["conditionalUpdate"] = cap.conditional_update
    entry["conditionalDelete"] = "not-supported"
    if cap.search:
        entry["searchParam"] = []
        for param in cap.search:
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


def capability_statement(
    capabilities: Iterable[ResourceCapability],
    *,
    canon: Canonicals,
    software_version: str,
    base_url: str,
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
                "the conformance resources that define them. Unknown search parameters are refused (400).",
                "resource": [_resource(canon, cap, base_url) for cap in capabilities],
            }
        ],
    }
