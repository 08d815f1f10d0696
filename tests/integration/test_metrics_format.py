"""``/metrics`` says what it sends: one Content-Type, with one charset, for each format a scraper may ask for."""

from __future__ import annotations

import httpx
import pytest

from tests.metrics import samples_of


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "text/plain"),
        ("text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "text/plain"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "text/plain"),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "application/openmetrics-text"),
        ("application/openmetrics-text", "application/openmetrics-text"),
    ],
)
async def test_metrics_content_type_has_one_charset(
    client: httpx.AsyncClient, accept: str | None, media_type: str
) -> None:
    """The exposition format follows Accept; its one Content-Type header names the format and charset=utf-8 once."""
    headers = {"Accept": accept} if accept is not None else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    [content_type] = response.headers.get_list("content-type")
    kind, *parameters = [part.strip() for part in content_type.split(";")]
    assert kind == media_type
    names = [parameter.split("=")[0].lower() for parameter in parameters]
    assert len(names) == len(set(names)), f"a parameter given twice: {content_type}"
    assert {"charset", "version"} <= set(names), content_type
    assert "charset=utf-8" in parameters
    if media_type == "application/openmetrics-text":
        assert response.text.endswith("# EOF\n")
    assert samples_of(response.text), "the body is in the format it says"
