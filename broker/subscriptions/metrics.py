"""Subscription metrics: ``prometheus_client`` collectors added to ``/metrics`` by the subscriptions plugin.

Per-subscription series (delivered, pending, failed attempts, last error, last success) are read
from the database before each scrape, so every process reports the same numbers whichever worker
delivered. Their label cardinality is bounded: only the ``subscriptions.metrics_max_subscriptions``
subscriptions with the most pending events and failed attempts get series of their own (labelled
by subscription id alone); every subscription is counted in the per-status sums (gauges: a
subscription's counts move between statuses). The delivery latency histogram (event committed to
2xx received) is this process's own worker's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from broker.subscriptions.repository import SubscriptionRepository
    from registry.db.pool import Database

__all__ = ("LatencyHistogram", "SubscriptionMetrics")

_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ERROR_LABEL_MAX = 120


class LatencyHistogram:
    """Delivery latency of event notifications (seconds), as a histogram of this process's worker."""

    def __init__(self) -> None:
        self.histogram = Histogram(
            "ief_subscription_delivery_latency_seconds",
            "Event committed to notification acknowledged (2xx), this process's worker.",
            buckets=_BOUNDS,
            registry=None,
        )

    def observe(self, milliseconds: float) -> None:
        """Add one delivery's latency."""
        self.histogram.observe(milliseconds / 1000)


def _label(text: str) -> str:
    return text[:_ERROR_LABEL_MAX].replace("\n", " ")


class SubscriptionMetrics:
    """The subscription series of ``/metrics``: read from the database by ``refresh``, reported by ``collect``."""

    def __init__(self, db: Database, repository: SubscriptionRepository, *, top: int) -> None:
        self._db = db
        self._repo = repository
        self._top = top
        self._totals: list[Any] = []
        self._stats: list[Any] = []

    async def refresh(self) -> None:
        """Read the totals per status and the top subscriptions' counters."""
        async with self._db.reader() as conn:
            self._totals = list(await self._repo.totals(conn))
            self._stats = list(await self._repo.stats(conn, self._top)) if self._top else []

    def collect(self) -> Iterator[Metric]:
        """The series as last read."""
        subscriptions = GaugeMetricFamily("ief_subscriptions", "Subscriptions by status.", labels=["status"])
        for row in self._totals:
            subscriptions.add_metric([row["status"]], row["subscriptions"])
        yield subscriptions
        for metric, column, text in (
            ("ief_subscription_events_delivered_total_all", "delivered", "Events delivered (2xx)."),
            ("ief_subscription_events_pending_all", "pending", "Events numbered and not yet final."),
            ("ief_subscription_failed_attempts_total_all", "failed", "Failed notification attempts."),
        ):
            summed = GaugeMetricFamily(metric, f"{text} Summed per subscription status.", labels=["status"])
            for row in self._totals:
                summed.add_metric([row["status"]], row[column])
            yield summed
        delivered = CounterMetricFamily(
            "ief_subscription_delivered", "Events delivered (2xx). Top subscriptions only.", labels=["subscription"]
        )
        pending = GaugeMetricFamily(
            "ief_subscription_pending",
            "Events numbered and not yet final. Top subscriptions only.",
            labels=["subscription"],
        )
        failed = CounterMetricFamily(
            "ief_subscription_failed_attempts",
            "Failed notification attempts. Top subscriptions only.",
            labels=["subscription"],
        )
        success = GaugeMetricFamily(
            "ief_subscription_last_success_seconds",
            "Unix time of the last 2xx. Top subscriptions only.",
            labels=["subscription"],
        )
        error = GaugeMetricFamily(
            "ief_subscription_last_error",
            "The last delivery error (value 1). Top subscriptions only.",
            labels=["subscription", "error"],
        )
        for row in self._stats:
            subscription = str(row["subscription_id"])
            delivered.add_metric([subscription], row["delivered_count"])
            pending.add_metric([subscription], row["pending"])
            failed.add_metric([subscription], row["failed_attempts"])
            if row["last_success_at"] is not None:
                success.add_metric([subscription], row["last_success_at"].timestamp())
            if row["last_error"]:
                error.add_metric([subscription, _label(row["last_error"])], 1)
        yield from (delivered, pending, failed, success, error)
