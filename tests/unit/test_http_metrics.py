"""The metrics of /metrics: bounded labels, cumulative buckets, the process series, both exposition formats."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from registry import __version__
from registry.metrics import Metrics
from tests.metrics import key, samples_of


async def test_unusual_methods_share_one_label_and_buckets_are_cumulative() -> None:
    """A method outside HTTP's usual ones counts as OTHER (no series per invented method); buckets accumulate."""
    metrics = Metrics()
    metrics.observe("BREW", "(unmatched)", 404, 0.002)
    metrics.observe("XYZZY", "(unmatched)", 404, 0.002)
    metrics.observe("GET", "/health/live", 200, 0.0004)
    metrics.observe("GET", "/health/live", 200, 0.3)
    metrics.observe("GET", "/health/live", 200, 60.0)
    body, _ = await metrics.exposition(None)
    text = body.decode()
    samples = samples_of(text)
    assert samples[key("ief_http_requests_total", method="OTHER", route="(unmatched)", status="404")] == 2
    assert "BREW" not in text
    assert "XYZZY" not in text
    bucket = "ief_http_request_duration_seconds_bucket"
    live = {"method": "GET", "route": "/health/live"}
    assert samples[key(bucket, **live, le="0.001")] == 1
    assert samples[key(bucket, **live, le="0.5")] == 2
    assert samples[key(bucket, **live, le="10.0")] == 2
    assert samples[key(bucket, **live, le="+Inf")] == 3
    assert abs(samples[key("ief_http_request_duration_seconds_sum", **live)] - 60.3004) < 1e-9


async def test_release_start_time_and_process_series_are_there() -> None:
    """The release, the process start time and the standard process series (memory, CPU, open files) are reported."""
    samples = samples_of((await Metrics().exposition(None))[0].decode())
    assert samples[key("ief_info", version=__version__)] == 1
    assert samples[key("ief_process_start_time_seconds")] > 0
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert samples[key(name)] > 0, name


async def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    """A scraper that accepts OpenMetrics gets it (and its media type); one that does not gets the text format."""
    metrics = Metrics()
    metrics.observe("GET", "/health/live", 200, 0.01)
    body, media_type = await metrics.exposition("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert media_type.startswith("application/openmetrics-text; version=1.0.0")
    parsed = openmetrics_families(body.decode())  # type: ignore[no-untyped-call]  # untyped in the library
    families = {family.name: family for family in parsed}
    assert families["ief_http_requests"].type == "counter"
    assert body.endswith(b"# EOF\n")
    _, plain = await metrics.exposition("text/plain")
    assert plain == "text/plain; version=0.0.4; charset=utf-8"
