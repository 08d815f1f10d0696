"""The FHIR router: CapabilityStatement, Endpoint, Basic (RegistryRecord), Patient/$locate, the broker's
ImagingStudy and DocumentReference searches, AuditEvent, Subscription and its topic, definitions.

``FHIR_RESOURCES`` pairs each resource's declaration with its controller: adding a resource (or an
operation on one) to the facade is adding it there; the CapabilityStatement follows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from litestar import Request, Router
from litestar.datastructures import State
from litestar.di import Provide

from broker.discovery.controller import (
    DOCUMENT_REFERENCE_SEARCH,
    IMAGING_STUDY_SEARCH,
    DocumentReferenceController,
    ImagingStudyController,
)
from broker.subscriptions.controller import SUBSCRIPTION, SubscriptionController, SubscriptionTopicController
from broker.subscriptions.resources import SubscriptionResources
from registry import __version__
from registry.fhir.audit_event.controller import AUDIT_EVENT, AuditEventController
from registry.fhir.basic.controller import BASIC, BasicController
from registry.fhir.basic.resources import RecordResources
from registry.fhir.conformance import CONFORMANCE, Conformance, conformance_controllers
from registry.fhir.endpoint.controller import ENDPOINT, EndpointController
from registry.fhir.endpoint.resources import EndpointResources
from registry.fhir.metadata import Metadata, MetadataController
from registry.fhir.patient.controller import PATIENT, PatientController
from registry.fhir.patient.resources import Locator
from registry.fhirapi.io import check_format, fhir_base
from schemas.fhir.canonical import Canonicals
from schemas.fhir.definitions import conformance_resources
from schemas.fhir.subscription import topic_document

if TYPE_CHECKING:
    from typing import Any

    from litestar import Controller

    from registry.config import Settings
    from schemas.fhir.capability import ResourceCapability

__all__ = ("FHIR_RESOURCES", "fhir_router")

FHIR_RESOURCES: tuple[tuple[ResourceCapability, type[Controller]], ...] = (
    (ENDPOINT, EndpointController),
    (BASIC, BasicController),
    (PATIENT, PatientController),
    (IMAGING_STUDY_SEARCH, ImagingStudyController),
    (DOCUMENT_REFERENCE_SEARCH, DocumentReferenceController),
    (AUDIT_EVENT, AuditEventController),
    (SUBSCRIPTION, SubscriptionController),
)
"""Every resource type the facade serves (besides the conformance resources), with its controller."""


def fhir_router(settings: Settings) -> Router:
    """Every FHIR route under ``/fhir``."""
    canon = Canonicals(settings.fhir.canonical_base.rstrip("/"))
    capabilities = (*(capability for capability, _ in FHIR_RESOURCES), *CONFORMANCE)
    metadata = Metadata(capabilities, canon=canon, version=__version__, date=datetime.now(UTC).replace(microsecond=0))
    conformance = Conformance(conformance_resources(canon, __version__))

    def records(state: State) -> RecordResources:
        return RecordResources(state.records, canon)

    def endpoints(state: State) -> EndpointResources:
        return EndpointResources(state.directory, canon)

    def locator(state: State) -> Locator:
        return Locator(state.records, canon)

    def subscriptions(state: State, request: Request[Any, Any, Any]) -> SubscriptionResources:
        return SubscriptionResources(state.subscriptions, canon, fhir_base(request))

    def topic(url: str) -> dict[str, Any]:
        return topic_document(url, version=__version__, date=metadata.date)

    return Router(
        path="/fhir",
        route_handlers=[
            MetadataController,
            *(controller for _, controller in FHIR_RESOURCES),
            SubscriptionTopicController,
            *conformance_controllers(CONFORMANCE),
        ],
        dependencies={
            "fhir_records": Provide(records, sync_to_thread=False),
            "fhir_endpoints": Provide(endpoints, sync_to_thread=False),
            "fhir_locator": Provide(locator, sync_to_thread=False),
            "fhir_subscriptions": Provide(subscriptions, sync_to_thread=False),
            "fhir_topic": Provide(lambda: topic, sync_to_thread=False),
            "fhir_metadata": Provide(lambda: metadata, sync_to_thread=False),
            "fhir_conformance": Provide(lambda: conformance, sync_to_thread=False),
            "fhir_settings": Provide(lambda: settings.fhir, sync_to_thread=False),
        },
        guards=[check_format],
        request_max_body_size=settings.http.max_body_bytes,
    )
