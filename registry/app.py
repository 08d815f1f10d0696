"""``create_app(settings)``: the one place where the server is wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from broker.discovery.gateways import GatewayClient, new_gateway_http
from broker.discovery.locator import RecordsLocator
from broker.discovery.service import DiscoveryService
from broker.subscriptions.delivery import DeliveryWorker
from broker.subscriptions.endpoints import EndpointPolicy
from broker.subscriptions.metrics import LatencyHistogram, SubscriptionMetrics
from broker.subscriptions.repository import SubscriptionRepository
from broker.subscriptions.service import SubscriptionService
from federation.backoff import FailureCache
from federation.client import PeerClient
from federation.resolver import Resolver
from registry import errors
from registry.audit.api import AuditCheckpointController
from registry.audit.checkpoints import CheckpointSigner, PublishedCheckpoints
from registry.audit.middleware import AuditMiddleware
from registry.audit.partitions import MonthKeeper
from registry.audit.repository import AuditRepository
from registry.audit.service import AuditService
from registry.audit.trail import AuditTrail
from registry.auth.controller import TokenController, WellKnownController
from registry.auth.guard import authenticate, check_route_security
from registry.auth.scopes import Principal, principal_of
from registry.auth.wiring import start_auth
from registry.db.migrate import SchemaTooNew, schema_state
from registry.db.pool import Database, open_database
from registry.db.queries import load_queries
from registry.directory.repository import ServiceRepository
from registry.directory.service import DirectoryService
from registry.fhir.router import fhir_router
from registry.health import HealthController
from registry.http import RequestContext, check_request
from registry.log import set_hash_key
from registry.metrics import HttpMetrics, MetricsController
from registry.outcome import OperationOutcomePlugin
from registry.records.controller import BatchController, RecordController
from registry.records.repository import RecordRepository
from registry.records.service import RecordService
from schemas.fhir.canonical import Canonicals

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler
    from litestar.types import ASGIApp

    from registry.auth.wiring import AuthParts
    from registry.config import Settings

__all__ = ("build_asgi", "create_app", "endpoint_policy")


class SchemaNotReady(RuntimeError):
    """The database schema is behind this release and migrations are not to be applied here."""


def _provide_records(state: State) -> RecordService:
    return state.records  # type: ignore[no-any-return]


def _provide_directory(state: State) -> DirectoryService:
    return state.directory  # type: ignore[no-any-return]


def _provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal is None:  # only on a public route that asks for a caller: a wiring mistake
        raise errors.Unauthenticated("this needs a bearer token", token_sent=False)
    return principal


def _provide_audit(state: State) -> AuditService:
    return state.audit  # type: ignore[no-any-return]


async def _guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-wide guard: authentication first (strangers learn nothing about parameters or media
    types), then the request checks. One guard rather than two: Litestar copies the route handler
    for every guard it runs, and each copy cost about 2.5 % of a look-up (docs/benchmarks.md).
    """
    await authenticate(connection, handler)
    await check_request(connection, handler)


def endpoint_policy(settings: Settings) -> EndpointPolicy:
    """Where notifications may go, from the settings (dev mode allows http and local addresses)."""
    return EndpointPolicy(
        dev=settings.dev,
        allowed_hosts=settings.subscriptions.allowed_hosts,
        allowed_networks=settings.subscriptions.allowed_networks,
    )


def _provide_discovery(state: State) -> DiscoveryService:
    return state.discovery  # type: ignore[no-any-return]


def _discovery(
    settings: Settings, records: RecordService, directory: DirectoryService, auth: AuthParts
) -> DiscoveryService:
    """The broker of one process: its gateway HTTP client, breakers and single flights."""
    http = new_gateway_http(settings.broker)
    gateways = GatewayClient(
        http,
        auth.outbound,
        max_bytes=settings.broker.max_response_bytes,
        per_gateway=settings.broker.gateway_concurrency,
    )
    return DiscoveryService(
        # The patient's services: its records here and at the registries they refer to.
        locator=RecordsLocator(records),
        directory=directory,
        gateways=gateways,
        http=http,
        settings=settings.broker,
        canon=Canonicals(settings.fhir.canonical_base.rstrip("/")),
    )


async def _require_schema_at_head(db: Database) -> None:
    """Refuse a database whose schema is behind this release or ahead of it."""
    async with db.primary.acquire() as conn:
        state = await schema_state(conn)
    if state.unknown:
        raise SchemaTooNew(f"the database has migrations {state.unknown} that this release does not know")
    if state.pending:
        raise SchemaNotReady(
            f"the database lacks migrations {[m.version for m in state.pending]}; run `ief-registry db upgrade`"
        )


def _resolver(settings: Settings, service_id: str, directory: DirectoryService, peers: PeerClient) -> Resolver:
    """The federation resolver of one process: follows registry records at peers (its negative cache in memory)."""
    return Resolver(
        origin=service_id,
        directory=directory,
        client=peers,
        settings=settings.federation,
        failures=FailureCache(settings.federation.negative_cache_seconds),
    )


async def _start_audit(
    app: Litestar, settings: Settings, db: Database, auth: AuthParts, trail: AuditTrail, repository: AuditRepository
) -> MonthKeeper:
    """The audit parts of a server process: search, checkpoints, partitions made ahead, the writer and the sealer."""
    app.state.audit = AuditService(db, repository, settings.fhir)
    app.state.audit_checkpoints = PublishedCheckpoints(db, repository)
    months = MonthKeeper(db, repository)
    await months.start()  # before the first request: its audit row needs this month's partition
    signer = CheckpointSigner(key=lambda: auth.keys.keys.audit, issuer=trail.observer)
    await trail.start(db, write_timeout=settings.database.command_timeout, signer=signer)
    return months


def create_app(settings: Settings, *, database_url: str, service_id: str, hash_key: bytes) -> Litestar:
    """Build the Litestar application for one server process.

    The database pools are opened in the lifespan and closed with it; the schema must be at this
    release's head (``ief-registry db upgrade`` or ``serve`` with auto-migrate gets it there).
    """
    queries = load_queries()
    set_hash_key(hash_key)
    audit_repository = AuditRepository(queries)
    trail = AuditTrail(audit_repository, settings.audit, observer=service_id)
    subscriptions = SubscriptionRepository(queries)
    canon = Canonicals(settings.fhir.canonical_base.rstrip("/"))
    policy = endpoint_policy(settings)
    latency = LatencyHistogram()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = await open_database(database_url, settings.database)
        try:
            await _require_schema_at_head(db)
            app.state.db = db
            directory = DirectoryService(db, ServiceRepository(queries))
            app.state.directory = directory
            app.state.subscriptions = SubscriptionService(
                db, subscriptions, settings.subscriptions, trail, canon=canon, policy=policy
            )
            app.state.metrics_sources = [
                app.state.http_metrics,
                SubscriptionMetrics(
                    db, subscriptions, top=settings.subscriptions.metrics_max_subscriptions, latency=latency
                ),
            ]
            auth = await start_auth(db, queries, settings, service_id)
            app.state.auth = auth
            app.state.authenticator = auth.authenticator
            peers = PeerClient(
                auth.outbound,
                max_bytes=settings.federation.max_response_bytes,
                max_connections=settings.federation.max_connections,
            )
            resolver = _resolver(settings, service_id, directory, peers)
            app.state.records = RecordService(db, RecordRepository(queries), settings.records, trail, resolver)
            app.state.discovery = _discovery(settings, app.state.records, directory, auth)
            months = await _start_audit(app, settings, db, auth, trail, audit_repository)
            worker = None
            if settings.subscriptions.worker:
                worker = DeliveryWorker(
                    db, subscriptions, settings.subscriptions, listen_url=settings.database.direct_url or database_url,
                    canon=canon, policy=policy, latency=latency,
                )  # fmt: skip
                await worker.start()
            try:
                yield
            finally:
                await app.state.discovery.close()
                if worker is not None:
                    await worker.stop()
                await peers.close()
                await auth.close()
                await months.stop()
        finally:
            await trail.stop()
            await db.close()

    registry_api = Router(
        path="/",
        route_handlers=[RecordController],
        request_max_body_size=settings.http.max_body_bytes,
    )
    batch_api = Router(
        path="/",
        route_handlers=[BatchController],
        request_max_body_size=settings.http.batch_max_body_bytes,
    )
    app = Litestar(
        route_handlers=[
            registry_api,
            batch_api,
            fhir_router(settings),
            HealthController,
            MetricsController,
            TokenController,
            WellKnownController,
            AuditCheckpointController,
        ],
        dependencies={
            "records": Provide(_provide_records, sync_to_thread=False),
            "directory": Provide(_provide_directory, sync_to_thread=False),
            "principal": Provide(_provide_principal, sync_to_thread=False),
            "audit": Provide(_provide_audit, sync_to_thread=False),
            "discovery": Provide(_provide_discovery, sync_to_thread=False),
        },
        guards=[_guard],
        plugins=[OperationOutcomePlugin()],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "service_id": service_id,
                "audit_trail": trail,
                "public_base_url": settings.public_base_url,
                "max_query_params": settings.http.max_query_params,
            }
        ),
        request_max_body_size=settings.http.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="ief-registry",
            version="0.1.0",
            # The API description is public: it says what the API is, not who is in it.
            openapi_router=Router(path="/schema", route_handlers=[], opt={"public": True}),
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
        ),
        logging_config=None,
        debug=False,
    )
    check_route_security(app)
    app.state.http_metrics = HttpMetrics()
    return app


def build_asgi(settings: Settings, *, database_url: str, service_id: str, hash_key: bytes) -> ASGIApp:
    """The ASGI application a server runs: the Litestar app inside the audit and request-context middlewares."""
    app = create_app(settings, database_url=database_url, service_id=service_id, hash_key=hash_key)
    audited = AuditMiddleware(app, app.state.audit_trail)
    return RequestContext(
        audited, access_log=settings.log.access, max_query_params=settings.http.max_query_params,
        metrics=app.state.http_metrics,
    )  # fmt: skip
