"""Subscription metrics in the Prometheus text format.

Per-subscription series (delivered, pending, failed attempts, last error, last success) are read
from the database, so every process reports the same numbers whichever worker delivered. Their
label cardinality is bounded: only the ``subscriptions.metrics_max_subscriptions`` subscriptions
with the most pending events and failed attempts get series of their own (labelled by
subscription id alone); every subscription is counted in the per-status totals. The delivery
latency histogram (event committed to 2xx received) is this process's own worker's.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from registry.metrics import histogram_lines

if TYPE_CHECKING:
    from broker.subscriptions.repository import SubscriptionRepository
    from registry.db.pool import Database

__all__ = ("LatencyHistogram", "SubscriptionMetrics")

_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)
_BOUNDS = tuple(bound / 1000 for bound in _BUCKETS_MS)
_ERROR_LABEL_MAX = 120


@dataclass(slots=True)
class LatencyHistogram:
    """Delivery latency of event notifications, in seconds, cumulative buckets as Prometheus wants them."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS_MS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, milliseconds: float) -> None:
        """Add one delivery's latency."""
        self.counts[bisect.bisect_left(_BUCKETS_MS, milliseconds)] += 1
        self.total += milliseconds / 1000
        self.count += 1

    def render(self, name: str) -> list[str]:
        """The histogram's exposition lines."""
        lines = [f"# HELP {name} Event committed to notification acknowledged (2xx), this process's worker.",
                 f"# TYPE {name} histogram"]  # fmt: skip
        return [*lines, *histogram_lines(name, "", _BOUNDS, self.counts, self.total)]


def _label(text: str) -> str:
    return text[:_ERROR_LABEL_MAX].replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class SubscriptionMetrics:
    """The subscription part of ``/metrics``."""

    def __init__(
        self, db: Database, repository: SubscriptionRepository, *, top: int, latency: LatencyHistogram
    ) -> None:
        self._db = db
        self._repo = repository
        self._top = top
        self.latency = latency

    async def render(self) -> list[str]:
        """Exposition lines of the subscription metrics."""
        async with self._db.reader() as conn:
            totals = await self._repo.totals(conn)
            stats = await self._repo.stats(conn, self._top) if self._top else []
        lines = ["# HELP ief_subscriptions Subscriptions by status.", "# TYPE ief_subscriptions gauge"]
        lines += [f'ief_subscriptions{{status="{row["status"]}"}} {row["subscriptions"]}' for row in totals]
        for metric, column, kind, text in (
            ("ief_subscription_events_delivered_total", "delivered", "counter", "Events delivered (2xx)."),
            ("ief_subscription_events_pending", "pending", "gauge", "Events numbered and not yet final."),
            ("ief_subscription_failed_attempts_total", "failed", "counter", "Failed notification attempts."),
        ):
            lines += [f"# HELP {metric}_all {text} Summed per status.", f"# TYPE {metric}_all {kind}"]
            lines += [f'{metric}_all{{status="{row["status"]}"}} {row[column]}' for row in totals]
        per = (
            ("ief_subscription_delivered_total", "delivered_count", "counter", "Events delivered (2xx)."),
            ("ief_subscription_pending", "pending", "gauge", "Events numbered and not yet final."),
            ("ief_subscription_failed_attempts", "failed_attempts", "counter", "Failed notification attempts."),
        )
        for metric, column, kind, text in per:
            lines += [f"# HELP {metric} {text} Top subscriptions only.", f"# TYPE {metric} {kind}"]
            lines += [f'{metric}{{subscription="{row["subscription_id"]}"}} {row[column]}' for row in stats]
        lines += [
            "# HELP ief_subscription_last_success_seconds Unix time of the last 2xx. Top subscriptions only.",
            "# TYPE ief_subscription_last_success_seconds gauge",
        ]
        lines += [
            f'ief_subscription_last_success_seconds{{subscription="{row["subscription_id"]}"}} '
            f"{row['last_success_at'].timestamp():.3f}"
            for row in stats
            if row["last_success_at"] is not None
        ]
        lines += [
            "# HELP ief_subscription_last_error The last delivery error (value 1). Top subscriptions only.",
            "# TYPE ief_subscription_last_error gauge",
        ]
        lines += [
            f'ief_subscription_last_error{{subscription="{row["subscription_id"]}",'
            f'error="{_label(row["last_error"])}"}} 1'
            for row in stats
            if row["last_error"]
        ]
        lines += self.latency.render("ief_subscription_delivery_latency_seconds")
        return lines
