"""The lifespan of one server process: the platform opened once, then each feature's services, in order.

Platform first: the database (its schema must be at this release's head), the authentication
parts (keys, issuer, outbound credentials), the audit trail (its months made ahead, then the group
writer and the sealer, which signs each closed month's checkpoint with the audit key). Then the
features, each through its plugin's typed ``open``: the directory, federation's resolver (which
the records service takes as its ``Referrals``), the privacy decision point and the consent signal,
the records service, the broker (which locates through the records service), subscriptions (and
their delivery worker), the Consent service. The result is one typed
``Services`` on ``app.state.services``, which ``deps.py`` hands to the routes. Everything closes in
the reverse order.

This is where a cross-cutting policy joins: built here from the platform, and given to each
feature that discloses (records, the broker, federation, notifications) as it is opened.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.discovery.locator import RecordsLocator
from broker.discovery.plugin import DiscoveryPlugin
from broker.subscriptions.plugin import SubscriptionsPlugin
from federation.plugin import FederationPlugin
from registry.audit.checkpoints import CheckpointSigner, PublishedCheckpoints
from registry.audit.partitions import MonthKeeper
from registry.audit.repository import AuditRepository
from registry.audit.service import AuditService
from registry.auth.wiring import start_auth
from registry.db.migrate import SchemaTooNew, schema_state
from registry.db.pool import open_database
from registry.db.queries import load_queries
from registry.directory.repository import ServiceRepository
from registry.directory.service import DirectoryService
from registry.outbound.egress import outbound_policy
from registry.privacy.consents import ConsentService
from registry.privacy.decision import DecisionPoint
from registry.privacy.repository import ConsentRepository
from registry.privacy.signal import ConsentSignal
from registry.records.disclosure import Disclosures
from registry.records.idempotency import IdempotencyRepository
from registry.records.jobs import LifecycleJobs
from registry.records.repository import RecordRepository
from registry.records.service import RecordService

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from litestar import Litestar
    from litestar.datastructures import State

    from broker.discovery.service import DiscoveryService
    from broker.subscriptions.groups import GroupService
    from broker.subscriptions.service import SubscriptionService
    from registry.audit.trail import AuditTrail
    from registry.auth.wiring import AuthParts
    from registry.config import Settings
    from registry.db.pool import Database
    from registry.metrics import Metrics
    from registry.server.app import Features
    from schemas.fhir.canonical import Canonicals

__all__ = ("SchemaNotReady", "Services", "lifespan", "services_of")


_REPLICA_WINDOW_SECONDS = 30.0
"""After a patient's Consents change, their look-ups read from the primary this long (a replica's lag)."""


class SchemaNotReady(RuntimeError):
    """The database schema is behind this release and migrations are not to be applied here."""


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, opened once per process by the lifespan (``app.state.services``)."""

    db: Database
    auth: AuthParts
    directory: DirectoryService
    records: RecordService
    audit: AuditService
    checkpoints: PublishedCheckpoints
    discovery: DiscoveryService
    subscriptions: SubscriptionService
    groups: GroupService
    lifecycle: LifecycleJobs
    consents: ConsentService


def services_of(state: State) -> Services:
    """The services of the running application."""
    services: Services = state.services
    return services


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


def lifespan(
    settings: Settings,
    features: Features,
    *,
    database_url: str,
    service_id: str,
    trail: AuditTrail,
    metrics: Metrics,
    canon: Canonicals,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The lifespan of an application built by ``create_app``."""
    queries = load_queries()

    @contextlib.asynccontextmanager
    async def run(app: Litestar) -> AsyncIterator[None]:
        federation, discovery, subscriptions = (
            features.get(FederationPlugin),
            features.get(DiscoveryPlugin),
            features.get(SubscriptionsPlugin),
        )
        async with contextlib.AsyncExitStack() as stack:
            db = await open_database(database_url, settings.database)
            stack.push_async_callback(db.close)
            await _require_schema_at_head(db)
            auth = await start_auth(db, queries, settings, service_id)
            stack.push_async_callback(auth.close)
            audit_repository = AuditRepository(queries)
            # Before the first request: its audit row needs this month's partition.
            await stack.enter_async_context(MonthKeeper(db, audit_repository).running())
            signer = CheckpointSigner(key=lambda: auth.keys.keys.audit, issuer=trail.observer)
            await trail.start(db, write_timeout=settings.database.command_timeout, signer=signer)
            stack.push_async_callback(trail.stop)
            directory = DirectoryService(db, ServiceRepository(queries), policy=outbound_policy(settings))
            referrals = await stack.enter_async_context(
                federation.open(
                    service_id=service_id, directory=directory, credentials=auth.outbound, db=db, queries=queries
                )
            )
            # The privacy decision point: every disclosure below passes through it (DESIGN §12).
            listen_url = settings.database.direct_url or database_url
            decisions = DecisionPoint()
            metrics.add(decisions.withheld_counter)
            metrics.add(decisions.break_glass_counter)
            signal = ConsentSignal(listen_url, window=_REPLICA_WINDOW_SECONDS)
            await signal.start()
            stack.push_async_callback(signal.stop)
            disclosures = Disclosures(
                decisions, changed=signal.recently_changed if settings.database.read_url else None
            )
            records = RecordService(
                db, RecordRepository(queries), settings.records, trail, disclosures, referrals,
                keys=IdempotencyRepository(queries),
            )  # fmt: skip
            # The broker locates a patient's services through their records here and at the registries they name.
            locator = RecordsLocator(records)
            broker = await stack.enter_async_context(
                discovery.open(
                    locator=locator, directory=directory, credentials=auth.outbound, assertions=auth.assertions,
                    canon=canon,
                )
            )  # fmt: skip
            signal.on_change(broker.forget_patient)
            notifications, groups = await stack.enter_async_context(
                subscriptions.open(
                    db=db, queries=queries, trail=trail, canon=canon, metrics=metrics, listen_url=listen_url,
                    decisions=decisions,
                )
            )  # fmt: skip
            audit = AuditService(db, audit_repository, settings.fhir)
            checkpoints = PublishedCheckpoints(db, audit_repository)
            lifecycle = LifecycleJobs(db, queries, directory, audit_repository, observer=service_id)
            consents = ConsentService(db, ConsentRepository(queries), trail)
            app.state.services = Services(
                db, auth, directory, records, audit, checkpoints, broker, notifications, groups, lifecycle, consents
            )
            app.state.authenticator = auth.authenticator  # the guard's, on every protected request
            yield

    return run
