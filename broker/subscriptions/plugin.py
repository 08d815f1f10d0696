"""How subscriptions join the server: the Subscription routes, the delivery worker and their metrics.

``ief-registry worker`` uses the same plugin for its delivery worker (``delivery``), without routes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from broker.subscriptions.controller import SUBSCRIPTION, SubscriptionController, SubscriptionTopicController
from broker.subscriptions.delivery import DeliveryWorker
from broker.subscriptions.group_controller import GROUP, GroupController
from broker.subscriptions.groups import GroupRepository, GroupService
from broker.subscriptions.metrics import LatencyHistogram, SubscriptionMetrics
from broker.subscriptions.repository import SubscriptionRepository
from broker.subscriptions.service import SubscriptionService
from registry.feature import FeaturePlugin
from registry.fhirapi.io import fhir_router
from registry.outbound.egress import webhook_policy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar.config.app import AppConfig
    from litestar.types import ControllerRouterHandler

    from registry.audit.trail import AuditTrail
    from registry.db.pool import Database
    from registry.db.queries import Queries
    from registry.metrics import Metrics
    from registry.outbound.egress import AddressPolicy
    from registry.privacy.decision import DecisionPoint
    from schemas.fhir.canonical import Canonicals

__all__ = ("SubscriptionsPlugin",)


class SubscriptionsPlugin(FeaturePlugin):
    """FHIR subscriptions and notifications (DESIGN §7)."""

    capabilities = (SUBSCRIPTION, GROUP)

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """The Subscription routes and the topic."""
        return (SubscriptionController, SubscriptionTopicController)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """The routes, and the Group routes behind the batch body limit (a cohort is up to 100,000 members)."""
        app_config = super().on_app_init(app_config)
        limit = self.settings.http.batch_max_body_bytes
        app_config.route_handlers.append(fhir_router([GroupController], max_body_bytes=limit))
        return app_config

    def policy(self) -> AddressPolicy:
        """Where notifications may go (dev mode allows http and local addresses)."""
        return webhook_policy(self.settings)

    @contextlib.asynccontextmanager
    async def open(
        self,
        *,
        db: Database,
        queries: Queries,
        trail: AuditTrail,
        canon: Canonicals,
        metrics: Metrics,
        listen_url: str,
        decisions: DecisionPoint,
    ) -> AsyncIterator[tuple[SubscriptionService, GroupService]]:
        """The subscription and cohort services of a server process, its metrics, and its delivery worker when
        ``subscriptions.worker`` is on (``listen_url``: where the worker's LISTEN connects; ``decisions``:
        the privacy decision point every notification passes)."""
        settings = self.settings.subscriptions
        repository = SubscriptionRepository(queries)
        latency = LatencyHistogram()
        metrics.add(latency.histogram)
        metrics.add(SubscriptionMetrics(db, repository, top=settings.metrics_max_subscriptions))
        groups = GroupRepository(queries)
        service = SubscriptionService(db, repository, settings, trail, canon=canon, policy=self.policy(), groups=groups)
        async with contextlib.AsyncExitStack() as stack:
            if settings.worker:
                await stack.enter_async_context(
                    self.delivery(
                        db=db,
                        queries=queries,
                        canon=canon,
                        listen_url=listen_url,
                        latency=latency,
                        decisions=decisions,
                    )
                )
            yield service, GroupService(db, groups, settings)

    @contextlib.asynccontextmanager
    async def delivery(
        self,
        *,
        db: Database,
        queries: Queries,
        canon: Canonicals,
        listen_url: str,
        decisions: DecisionPoint,
        latency: LatencyHistogram | None = None,
    ) -> AsyncIterator[DeliveryWorker]:
        """A running delivery worker (stopped at the end): inside ``serve``, or ``ief-registry worker`` alone."""
        worker = DeliveryWorker(
            db, SubscriptionRepository(queries), self.settings.subscriptions, listen_url=listen_url, canon=canon,
            policy=self.policy(), latency=latency or LatencyHistogram(), decisions=decisions,
        )  # fmt: skip
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()
