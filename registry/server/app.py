"""``create_app(settings)``: the one place where the server is put together from its features.

Each feature contributes itself through its plugin (``registry.feature.FeaturePlugin``): its
routes and the FHIR resources it declares join the application by themselves, and the lifespan
(``lifespan.py``) opens its services in order. Adding a FHIR resource is a feature package and one
line in ``Features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from broker.discovery.plugin import DiscoveryPlugin
from broker.subscriptions.plugin import SubscriptionsPlugin
from federation.plugin import FederationPlugin
from registry.audit.middleware import AuditMiddleware
from registry.audit.repository import AuditRepository
from registry.audit.trail import AuditTrail
from registry.auth.controller import FhirWellKnownController, TokenController, WellKnownController
from registry.auth.guard import authorize, check_route_security, open_options
from registry.db.queries import load_queries
from registry.feature import FeaturePlugin
from registry.fhir.plugin import AuditEventPlugin, ConsentPlugin, RegistryResourcesPlugin
from registry.fhirapi.io import fhir_router
from registry.health import HealthController
from registry.http import JsonRequest, RequestContext, public_base_url
from registry.instance import release
from registry.log import set_hash_key
from registry.metrics import Metrics, MetricsController
from registry.outcome import OperationOutcomePlugin
from registry.records.plugin import RecordsPlugin
from registry.server.deps import dependencies
from registry.server.fhir_routes import base_routes, conformance, metadata
from registry.server.lifespan import lifespan
from registry.server.openapi import OpenApiDocument
from registry.server.pages import index, schema_assets, schema_pages, schema_router
from schemas.fhir.canonical import Canonicals

if TYPE_CHECKING:
    from litestar.types import ASGIApp

    from registry.config import Settings
    from schemas.fhir.capability import ResourceCapability

__all__ = ("Features", "build_asgi", "create_app")


P = TypeVar("P", bound="FeaturePlugin")


@dataclass(frozen=True, slots=True)
class Features:
    """Every feature of the server, as the plugin it contributes itself through."""

    plugins: tuple[FeaturePlugin, ...]

    @classmethod
    def of(cls, settings: Settings) -> Features:
        """The features, configured, in the order of the CapabilityStatement: one line each."""
        return cls(
            (
                RecordsPlugin(settings),
                RegistryResourcesPlugin(settings),
                FederationPlugin(settings),
                DiscoveryPlugin(settings),
                AuditEventPlugin(settings),
                ConsentPlugin(settings),
                SubscriptionsPlugin(settings),
            )
        )

    def get(self, kind: type[P]) -> P:
        """The plugin of one kind (the lifespan opens its services)."""
        return next(plugin for plugin in self.plugins if isinstance(plugin, kind))

    @property
    def capabilities(self) -> tuple[ResourceCapability, ...]:
        """Every FHIR resource type the features serve."""
        return tuple(capability for plugin in self.plugins for capability in plugin.capabilities)


def create_app(settings: Settings, *, database_url: str, service_id: str, hash_key: bytes) -> Litestar:
    """Build the Litestar application of one server process.

    The database is opened in the lifespan and closed with it; its schema must be at this
    release's head (``ief-registry db upgrade`` or ``serve`` with auto-migrate gets it there).
    """
    set_hash_key(hash_key)
    canon = Canonicals.under(settings.fhir.canonical_base)
    features = Features.of(settings)
    metrics = Metrics()
    trail = AuditTrail(AuditRepository(load_queries()), settings.audit, observer=service_id)
    opened = lifespan(
        settings, features, database_url=database_url, service_id=service_id, trail=trail, metrics=metrics, canon=canon
    )
    about = metadata(features.capabilities, canon)
    provided = dependencies(settings, canon=canon, metrics=metrics, metadata=about, conformance=conformance(canon))
    fhir_base = fhir_router(base_routes(), max_body_bytes=settings.http.max_body_bytes, authorize=authorize)
    pages = (index, schema_assets())
    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            TokenController,
            WellKnownController,
            FhirWellKnownController,
            fhir_base,
            *pages,
        ],
        plugins=[OperationOutcomePlugin(canon), *features.plugins],
        dependencies=provided,
        before_request=authorize,
        lifespan=[opened],
        state=State(
            {
                "audit_trail": trail,
                "metrics": metrics,
                "public_base_url": public_base_url(settings),
                "max_query_params": settings.http.max_query_params,
                "openapi_document": OpenApiDocument(features.capabilities),
                "require_purpose": settings.privacy.require_purpose,
            }
        ),
        request_max_body_size=settings.http.max_body_bytes,
        request_class=JsonRequest,
        openapi_config=_openapi(),
        logging_config=None,
        debug=False,
    )
    check_route_security(app)
    open_options(app)
    return app


def _openapi() -> OpenAPIConfig:
    """The OpenAPI description at ``/schema``: public, since it says what the API is, not who is in it."""
    return OpenAPIConfig(
        title="ief-registry",
        version=release(),
        openapi_router=schema_router(),
        render_plugins=schema_pages(),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="Access token from /auth/token (SMART Backend Services) or a trusted issuer.",
                )
            }
        ),
        security=[{"bearer": []}],
    )


def build_asgi(settings: Settings, *, database_url: str, service_id: str, hash_key: bytes) -> ASGIApp:
    """The ASGI application a server runs: the Litestar app inside the audit and request-context middlewares."""
    app = create_app(settings, database_url=database_url, service_id=service_id, hash_key=hash_key)
    audited = AuditMiddleware(app, app.state.audit_trail, Canonicals.under(settings.fhir.canonical_base))
    return RequestContext(
        audited, access_log=settings.log.access, max_query_params=settings.http.max_query_params,
        metrics=app.state.metrics,
    )  # fmt: skip
