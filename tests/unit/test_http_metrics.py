"""The request metrics of /metrics: bounded labels, cumulative buckets."""

from __future__ import annotations

from registry.metrics import HttpMetrics


async def test_unusual_methods_share_one_label_and_buckets_are_cumulative() -> None:
    """A method outside HTTP's usual ones counts as OTHER (no series per invented method); buckets accumulate."""
    metrics = HttpMetrics()
    metrics.observe("BREW", "(unmatched)", 404, 0.002)
    metrics.observe("XYZZY", "(unmatched)", 404, 0.002)
    metrics.observe("GET", "/health/live", 200, 0.0004)
    metrics.observe("GET", "/health/live", 200, 0.3)
    metrics.observe("GET", "/health/live", 200, 60.0)
    text = "\n".join(await metrics.render())
    assert 'ief_http_requests_total{method="OTHER",route="(unmatched)",status="404"} 2' in text
    assert "BREW" not in text
    assert "XYZZY" not in text
    live = 'method="GET",route="/health/live"'
    assert f'ief_http_request_duration_seconds_bucket{{{live},le="0.001"}} 1' in text
    assert f'ief_http_request_duration_seconds_bucket{{{live},le="0.5"}} 2' in text
    assert f'ief_http_request_duration_seconds_bucket{{{live},le="10"}} 2' in text
    assert f'ief_http_request_duration_seconds_bucket{{{live},le="+Inf"}} 3' in text
    assert f"ief_http_request_duration_seconds_sum{{{live}}} 60.300400" in text
