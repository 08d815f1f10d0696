"""``GET /metrics``: this process's metrics, for the operator (admin scope; Prometheus sends a bearer token).

It is not public: per-subscription series name subscriptions, and counts say how busy the
registry is. ``Metrics`` holds one application's series in a ``prometheus_client`` registry of its
own (a process may run several applications: the tests do):

- ``ief_info`` (the release), ``ief_process_start_time_seconds``, and the standard ``process_*``
  (RSS, CPU seconds, open file descriptors…) and ``python_info`` series;
- ``ief_http_requests_total`` and ``ief_http_request_duration_seconds``, fed by
  ``registry.http.RequestContext``: labels are route templates (``/registry/records/{ihi}``), never
  raw paths, which carry IHIs, so the number of series is bounded by the routes;
- what features add (``add``): collectors whose samples are read from the database are refreshed
  (awaited) before each scrape (``Refreshing``).

The answer is the Prometheus text format, or OpenMetrics when the scraper asks for it (``Accept``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import prometheus_client
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from registry import __version__
from registry.auth.scopes import ADMIN
from registry.route import RouteSpec

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ("Metrics", "MetricsController", "Refreshing")

_STARTED = time.time()
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request duration histogram's buckets."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@runtime_checkable
class Refreshing(Protocol):
    """A collector whose samples are read (from the database) before each scrape."""

    async def refresh(self) -> None:
        """Read what the next ``collect()`` reports."""
        ...


class Metrics:
    """The series of one application, and what the request path feeds them (``observe``)."""

    def __init__(self) -> None:
        # No ``*_created`` series: every process reports its start time once (ief_process_start_time_seconds).
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = CollectorRegistry(auto_describe=True)
        Info("ief", "The running release.", registry=self.registry).info({"version": __version__})
        started = Gauge("ief_process_start_time_seconds", "Unix time this server process started.", registry=None)
        started.set(_STARTED)
        self.registry.register(started)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._requests = Counter(
            "ief_http_requests",
            "HTTP requests answered by this process, by method, route and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "ief_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route.",
            ("method", "route"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._refreshing: list[Refreshing] = []

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request that took ``seconds`` to answer (a method outside HTTP's usual ones counts as OTHER)."""
        method = method if method in _METHODS else "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # the labelled series of this key, looked up once
            children = (self._requests.labels(method, route, str(status)), self._durations.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def add(self, collector: Collector) -> None:
        """Add a feature's series (refreshed before each scrape when it is ``Refreshing``)."""
        self.registry.register(collector)
        if isinstance(collector, Refreshing):
            self._refreshing.append(collector)

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The current series in the format ``accept`` asks for (OpenMetrics or Prometheus text), and its media type."""
        for collector in self._refreshing:
            await collector.refresh()
        encode, media_type = choose_encoder(accept or "")
        return encode(self.registry), media_type


class MetricsController(Controller):
    """The metrics endpoint (admin only)."""

    path = "/metrics"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="metrics", media_type="text/plain", opt=RouteSpec(scopes=(ADMIN,)).opt)
    async def metrics(self, metrics: NamedDependency[Metrics], request: Request[Any, Any, Any]) -> Response[bytes]:
        """Server and subscription metrics in the Prometheus text format (OpenMetrics when asked for)."""
        body, media_type = await metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": media_type})
