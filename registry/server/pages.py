"""What a person who points a browser at the server finds: the index at ``/`` and the API's documentation pages.

The documentation pages (ReDoc at ``/schema``, Swagger UI at ``/schema/swagger``) load every script,
style sheet and icon from this server (``/schema/assets/…``, the files of the ``openapi-ui-bundles``
package), never from a CDN: hospital networks are often offline, and a page that needs the internet
shows nothing there. No web fonts are loaded (ReDoc falls back to the system's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import openapi_ui_bundles
from litestar import Router, get
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.params import FromPath
from litestar.response import File

from registry import errors
from registry.instance import release
from registry.route import RouteSpec
from registry.server.openapi import Described

if TYPE_CHECKING:
    from litestar.openapi.plugins import OpenAPIRenderPlugin

__all__ = ("ASSETS_PATH", "SCHEMA_PATH", "index", "schema_assets", "schema_pages", "schema_router")

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"

_ASSETS: dict[str, tuple[Path, str]] = {
    "redoc.standalone.js": (openapi_ui_bundles.redoc.static_path, "text/javascript"),
    "swagger-ui-bundle.js": (openapi_ui_bundles.swagger_ui.static_path, "text/javascript"),
    "swagger-ui-standalone-preset.js": (openapi_ui_bundles.swagger_ui.static_path, "text/javascript"),
    "swagger-ui.css": (openapi_ui_bundles.swagger_ui.static_path, "text/css"),
    "favicon-32x32.png": (openapi_ui_bundles.swagger_ui.static_path, "image/png"),
}
"""The only files served under ``/schema/assets``: what the pages name, and nothing else of the package."""


@get("/", operation_id="index", opt=RouteSpec(public=True).opt, tags=["operations"])
async def index() -> dict[str, object]:
    """What this server is and where to go next: the FHIR CapabilityStatement, the API description, health."""
    return {
        "name": "ief-registry",
        "version": release(),
        "links": {
            "fhirMetadata": "/fhir/metadata",
            "schema": SCHEMA_PATH,
            "openapi": f"{SCHEMA_PATH}/openapi.json",
            "live": "/health/live",
            "ready": "/health/ready",
        },
    }


def schema_pages() -> list[OpenAPIRenderPlugin]:
    """ReDoc (``/schema``, ``/schema/redoc``), Swagger UI (``/schema/swagger``) and the description itself
    (``/schema/openapi.json``, ``/schema/openapi.yaml``), every page loading its assets from ``/schema/assets``
    and showing the one completed document (``registry.server.openapi``)."""
    favicon = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>"
    pages: list[OpenAPIRenderPlugin] = [
        RedocRenderPlugin(
            js_url=f"{ASSETS_PATH}/redoc.standalone.js", google_fonts=False, path=["/", "/redoc"], favicon=favicon
        ),
        SwaggerRenderPlugin(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            path="/swagger",
            favicon=favicon,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]
    return [Described(page) for page in pages]


@get("/{name:str}", include_in_schema=False)
async def _asset(name: FromPath[str]) -> File:
    """One asset of the documentation pages (404 for any other name)."""
    found = _ASSETS.get(name)
    if found is None:
        raise errors.NotFound(f"no documentation asset {name!r}")
    folder, media_type = found
    return File(
        folder / name,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@get("/{path:str}", include_in_schema=False)
async def _no_such_page(path: FromPath[str]) -> None:
    """Any other name under ``/schema``: a 404 OperationOutcome, as everywhere. It takes the place of the OpenAPI
    plugin's own handler of the same path (an HTML page)."""
    raise errors.NotFound(f"no documentation page {path!r}")


def schema_router() -> Router:
    """The router of the pages under ``/schema`` (public: they say what the API is, not who is in it); the pages
    themselves are added by the OpenAPI plugin from ``schema_pages()``."""
    return Router(path=SCHEMA_PATH, route_handlers=[_no_such_page], opt=RouteSpec(public=True).opt)


def schema_assets() -> Router:
    """The router of ``/schema/assets/{name}`` (public: the pages say what the API is, not who is in it)."""
    return Router(path=ASSETS_PATH, route_handlers=[_asset], opt=RouteSpec(public=True).opt)
