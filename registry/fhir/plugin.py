"""How the registry's own FHIR resources join the server, over the records, directory and audit services:
Endpoint, Basic (RegistryRecord) and ``Patient/$locate``; and the audit trail as AuditEvent, with its
signed monthly checkpoints (``GET /audit/checkpoints``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.audit.api import AuditCheckpointController
from registry.feature import FeaturePlugin
from registry.fhir.audit_event.controller import AUDIT_EVENT, AuditEventController
from registry.fhir.basic.controller import BASIC, BasicController
from registry.fhir.consent.controller import CONSENT, ConsentController
from registry.fhir.endpoint.controller import ENDPOINT, ORGANIZATION, EndpointController, OrganizationController
from registry.fhir.patient.controller import PATIENT, PatientController

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import ControllerRouterHandler

__all__ = ("AuditEventPlugin", "ConsentPlugin", "RegistryResourcesPlugin")


class RegistryResourcesPlugin(FeaturePlugin):
    """The FHIR face of the registry's records and directory."""

    capabilities = (ENDPOINT, ORGANIZATION, BASIC, PATIENT)

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """One controller per resource type."""
        return (EndpointController, OrganizationController, BasicController, PatientController)


class AuditEventPlugin(FeaturePlugin):
    """The audit trail as FHIR AuditEvents (the operator's view), and its checkpoints."""

    capabilities = (AUDIT_EVENT,)

    def routes(self) -> Sequence[ControllerRouterHandler]:
        """The signed checkpoints of the sealed months."""
        return (AuditCheckpointController,)

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """Search and read."""
        return (AuditEventController,)


class ConsentPlugin(FeaturePlugin):
    """Patients' privacy Consents (DESIGN §12): what the privacy decision point enforces."""

    capabilities = (CONSENT,)

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """Create, read, update and search."""
        return (ConsentController,)
