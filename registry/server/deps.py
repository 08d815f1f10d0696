"""Every dependency the routes take, by name: the services of the lifespan and, per request, the FHIR
resources of each feature over them (``fhir_*``).

Litestar reads the providers' signatures at runtime, so the types they name are imported here at
runtime too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from broker.discovery.resources import DiscoveryResources
from broker.discovery.service import DiscoveryService
from broker.subscriptions.groups import GroupService
from broker.subscriptions.resources import SubscriptionResources
from registry.audit.checkpoints import PublishedCheckpoints
from registry.auth.requester import Requester, requester_from
from registry.auth.scopes import Principal, caller_of
from registry.auth.wiring import AuthParts
from registry.config import Settings
from registry.db.pool import Database
from registry.directory.service import DirectoryService
from registry.fhir.audit_event.resources import AuditEventResources
from registry.fhir.basic.resources import RecordResources
from registry.fhir.conformance import Conformance
from registry.fhir.consent.resources import ConsentResources
from registry.fhir.endpoint.resources import EndpointResources, OrganizationResources
from registry.fhir.metadata import Metadata
from registry.fhir.patient.resources import Locator
from registry.fhirapi.io import fhir_base
from registry.metrics import Metrics
from registry.records.jobs import LifecycleJobs
from registry.records.service import RecordService
from registry.server.lifespan import services_of
from schemas.fhir.canonical import Canonicals
from schemas.fhir.topic import topic_basic, topic_document

__all__ = ("dependencies",)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    return caller_of(request)


def _requester(request: Request[Any, Any, Any]) -> Requester:
    return requester_from(request)


def _db(state: State) -> Database:
    return services_of(state).db


def _auth(state: State) -> AuthParts:
    return services_of(state).auth


def _records(state: State) -> RecordService:
    return services_of(state).records


def _directory(state: State) -> DirectoryService:
    return services_of(state).directory


def _discovery(state: State) -> DiscoveryService:
    return services_of(state).discovery


def _groups(state: State) -> GroupService:
    return services_of(state).groups


def _lifecycle(state: State) -> LifecycleJobs:
    return services_of(state).lifecycle


def _checkpoints(state: State) -> PublishedCheckpoints:
    return services_of(state).checkpoints


def dependencies(
    settings: Settings, *, canon: Canonicals, metrics: Metrics, metadata: Metadata, conformance: Conformance
) -> dict[str, Provide]:
    """Every ``Provide`` of the application (each a coroutine-free function, never run in a thread)."""

    def fhir_records(state: State) -> RecordResources:
        return RecordResources(services_of(state).records, canon)

    def fhir_endpoints(state: State) -> EndpointResources:
        return EndpointResources(services_of(state).directory, canon)

    def fhir_organizations(state: State) -> OrganizationResources:
        return OrganizationResources(services_of(state).directory, canon)

    def fhir_locator(state: State) -> Locator:
        return Locator(services_of(state).records, canon)

    def fhir_audit(state: State) -> AuditEventResources:
        return AuditEventResources(services_of(state).audit, canon.base)

    def fhir_consents(state: State) -> ConsentResources:
        return ConsentResources(services_of(state).consents)

    def fhir_discovery(state: State) -> DiscoveryResources:
        return DiscoveryResources(services_of(state).discovery, canon)

    def fhir_subscriptions(state: State, request: Request[Any, Any, Any]) -> SubscriptionResources:
        return SubscriptionResources(services_of(state).subscriptions, canon, fhir_base(request))

    def topic(url: str, topic_id: str, *, r5: bool = False) -> dict[str, Any]:
        render = topic_document if r5 else topic_basic
        return render(url, version=metadata.version, date=metadata.date, topic=topic_id)

    provided: dict[str, Callable[..., Any]] = {
        "principal": _principal,
        "requester": _requester,
        "db": _db,
        "auth": _auth,
        "records": _records,
        "directory": _directory,
        "discovery": _discovery,
        "groups": _groups,
        "lifecycle": _lifecycle,
        "audit_checkpoints": _checkpoints,
        "metrics": lambda: metrics,
        "fhir_settings": lambda: settings.fhir,
        "fhir_metadata": lambda: metadata,
        "fhir_conformance": lambda: conformance,
        "fhir_topic": lambda: topic,
        "fhir_records": fhir_records,
        "fhir_endpoints": fhir_endpoints,
        "fhir_organizations": fhir_organizations,
        "fhir_locator": fhir_locator,
        "fhir_audit": fhir_audit,
        "fhir_discovery": fhir_discovery,
        "fhir_consents": fhir_consents,
        "fhir_subscriptions": fhir_subscriptions,
    }
    return {name: Provide(function, sync_to_thread=False) for name, function in provided.items()}
