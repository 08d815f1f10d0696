"""``GET /metrics``: Prometheus text, for the operator (admin scope; Prometheus sends a bearer token).

It is not public: per-subscription series name subscriptions, and counts say how busy the
registry is. Parts of the server add their series through ``MetricsSource`` (``app.py`` wires
them), so this module knows none of them.
"""

from __future__ import annotations

import time
from typing import Protocol

from litestar import Controller, Response, get
from litestar.datastructures import State

from registry import __version__
from registry.auth.scopes import ADMIN

__all__ = ("PROMETHEUS_TEXT", "MetricsController", "MetricsSource")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_STARTED = time.time()


class MetricsSource(Protocol):
    """Something that adds series to ``/metrics``."""

    async def render(self) -> list[str]:
        """Its exposition lines (``# HELP``, ``# TYPE`` and samples)."""
        ...


class MetricsController(Controller):
    """The metrics endpoint (admin only)."""

    path = "/metrics"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="metrics", media_type=PROMETHEUS_TEXT, opt={"scopes": (ADMIN,)})
    async def metrics(self, state: State) -> Response[str]:
        """Server and subscription metrics in the Prometheus text format."""
        lines = [
            "# HELP ief_info The running release.",
            "# TYPE ief_info gauge",
            f'ief_info{{version="{__version__}"}} 1',
            "# HELP ief_process_start_time_seconds Unix time this server process started.",
            "# TYPE ief_process_start_time_seconds gauge",
            f"ief_process_start_time_seconds {_STARTED:.3f}",
        ]
        sources: list[MetricsSource] = state.get("metrics_sources", [])
        for source in sources:
            lines += await source.render()
        return Response("\n".join(lines) + "\n", media_type=PROMETHEUS_TEXT)
