"""``GET /metrics``: Prometheus text, for the operator (admin scope; Prometheus sends a bearer token).

It is not public: per-subscription series name subscriptions, and counts say how busy the
registry is. Parts of the server add their series through ``MetricsSource`` (``app.py`` wires
them), so this module knows none of them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from typing import Protocol

from litestar import Controller, Response, get
from litestar.datastructures import State

from registry import __version__
from registry.auth.scopes import ADMIN
from registry.route import RouteSpec

__all__ = ("PROMETHEUS_TEXT", "HttpMetrics", "MetricsController", "MetricsSource", "histogram_lines")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_STARTED = time.time()


class MetricsSource(Protocol):
    """Something that adds series to ``/metrics``."""

    async def render(self) -> list[str]:
        """Its exposition lines (``# HELP``, ``# TYPE`` and samples)."""
        ...


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request duration histogram's buckets."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """Requests served by this process: counts by method, route template and status; durations by route.

    Labels are route templates (``/registry/records/{ihi}``), never raw paths, which carry IHIs; so
    the number of series is bounded by the routes. Fed by ``registry.http.RequestContext``; the
    cost per request is two dictionary updates and a bisection.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._durations: dict[tuple[str, str], list[float]] = {}
        """Per (method, route): a count per bucket (the last for +Inf), then the sum of durations."""

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request that took ``seconds`` to answer (a method outside HTTP's usual ones counts as OTHER)."""
        method = method if method in _METHODS else "OTHER"
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        histogram = self._durations.get((method, route))
        if histogram is None:
            histogram = self._durations[(method, route)] = [0.0] * (len(_BUCKETS) + 2)
        histogram[bisect.bisect_left(_BUCKETS, seconds)] += 1
        histogram[-1] += seconds

    async def render(self) -> list[str]:
        """The two series: ``ief_http_requests_total`` and ``ief_http_request_duration_seconds``."""
        lines = [
            "# HELP ief_http_requests_total HTTP requests answered by this process, by method, route and status.",
            "# TYPE ief_http_requests_total counter",
        ]
        for (method, route, status), count in sorted(self._requests.items()):
            lines.append(
                f'ief_http_requests_total{{method="{method}",route="{_label(route)}",status="{status}"}} {count}'
            )
        name = "ief_http_request_duration_seconds"
        lines += [
            f"# HELP {name} Time from a request's arrival to the end of its response, by method and route.",
            f"# TYPE {name} histogram",
        ]
        for (method, route), histogram in sorted(self._durations.items()):
            counts = [int(count) for count in histogram[:-1]]
            lines += histogram_lines(
                name, f'method="{method}",route="{_label(route)}"', _BUCKETS, counts, histogram[-1]
            )
        return lines


def histogram_lines(name: str, labels: str, bounds: Sequence[float], counts: Sequence[int], total: float) -> list[str]:
    """A histogram's samples: cumulative ``_bucket`` lines, then ``_sum`` and ``_count``.

    ``counts`` holds one count per bucket of ``bounds`` (upper bounds, in seconds) and one more for
    what lies above the last; ``total`` is the sum of the observed values; ``labels`` the other labels.
    """
    within = f"{labels}," if labels else ""
    lines = []
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        lines.append(f'{name}_bucket{{{within}le="{bound:g}"}} {running}')
    running += counts[len(bounds)]
    lines.append(f'{name}_bucket{{{within}le="+Inf"}} {running}')
    suffix = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{suffix} {total:.6f}")
    lines.append(f"{name}_count{suffix} {running}")
    return lines


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class MetricsController(Controller):
    """The metrics endpoint (admin only)."""

    path = "/metrics"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="metrics", media_type=PROMETHEUS_TEXT, opt=RouteSpec(scopes=(ADMIN,)).opt)
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
