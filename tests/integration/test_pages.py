"""What a browser finds: the JSON index at ``/`` and the documentation pages, whole without the internet."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from registry.instance import release


class _References(HTMLParser):
    """Every URL an HTML page makes the browser load: ``src`` and ``href`` of any element."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def _references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    return parser.urls


async def test_index_names_the_server_and_links_that_answer(anonymous: httpx.AsyncClient) -> None:
    """``/`` (public) is a small JSON index: name, version, and links that each answer 200 without a token."""
    response = await anonymous.get("/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    index = response.json()
    assert index["name"] == "ief-registry"
    assert index["version"] == release()
    assert set(index["links"]) >= {"fhirMetadata", "schema", "openapi", "live", "ready"}
    for link in index["links"].values():
        assert (await anonymous.get(link)).status_code == 200, link


@pytest.mark.parametrize("page", ["/schema", "/schema/redoc", "/schema/swagger"])
async def test_documentation_pages_load_everything_from_this_server(anonymous: httpx.AsyncClient, page: str) -> None:
    """Each documentation page names only assets on this server, and every one of them answers 200 with content."""
    response = await anonymous.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    urls = _references(response.text)
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts, f"{page} names no script: {urls}"
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from elsewhere"
        asset = await anonymous.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
        assert asset.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/png"}, url
    assert "fonts.googleapis.com" not in response.text


async def test_only_the_pages_assets_are_served(anonymous: httpx.AsyncClient) -> None:
    """``/schema/assets/`` serves the files the pages name and nothing else: any other name is a 404 outcome."""
    for name in ("index.html", "..%2Fpyproject.toml", "redoc.standalone.js.map"):
        response = await anonymous.get(f"/schema/assets/{name}")
        assert response.status_code == 404, name
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_every_page_and_file_shows_the_completed_document(anonymous: httpx.AsyncClient) -> None:
    """``openapi.yaml`` and the pages state the document of ``openapi.json``, completed from the routes'
    declarations (its OperationOutcome schema, its FHIR media types), not Litestar's draft of it."""
    document = (await anonymous.get("/schema/openapi.json")).json()
    assert "OperationOutcome" in document["components"]["schemas"]
    as_yaml = await anonymous.get("/schema/openapi.yaml")
    assert as_yaml.status_code == 200
    assert "\n    OperationOutcome:\n" in as_yaml.text
    assert "application/fhir+json" in as_yaml.text
    for page in ("/schema", "/schema/swagger"):
        text = (await anonymous.get(page)).text
        assert '"OperationOutcome"' in text, page
        assert "application/fhir+json" in text, page


@pytest.mark.parametrize("path", ["/schema/elements", "/schema/nothing-here", "/schema/openapi.xml"])
async def test_any_other_page_is_a_404_outcome(anonymous: httpx.AsyncClient, path: str) -> None:
    """A name under ``/schema`` that is no page is a 404 OperationOutcome, as everywhere (not an HTML page)."""
    response = await anonymous.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.json()["resourceType"] == "OperationOutcome"
