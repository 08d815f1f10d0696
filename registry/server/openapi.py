"""The OpenAPI document at ``/schema/openapi.json``: Litestar's, completed from the declarations the routes use.

Litestar describes each handler from its signature; most of ours take the raw request and answer
bytes, so what they take and answer is in their ``RouteSpec`` (``registry.route``) and in the
``ResourceCapability`` declarations (``schemas.fhir.capability``) the routes read their parameters
from. This module completes the generated document from those same declarations, so it cannot
drift from the server:

- security: none on public routes (metadata, conformance resources, discovery, health, the token
  endpoint, this document), the bearer token elsewhere;
- query parameters: every name the route takes, documented from its search parameter declaration;
  the result parameters with the values FHIR defines;
- FHIR routes answer ``application/fhir+json``: a resource, or an OperationOutcome for every error
  status; their bodies are resources (a ``Parameters`` for an operation); create answers 201 or 200
  (an existing record, a conditional create), a PUT 200 or 201;
- the token endpoint takes its form (``application/x-www-form-urlencoded``) and answers RFC 6749 JSON.

The document is built on first request and kept (``OpenApiDocument``); every page and file under
``/schema`` (``registry.server.pages``: ReDoc, Swagger UI, ``openapi.json``, ``openapi.yaml``) shows
it (``Described``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.routes import HTTPRoute

from registry.route import RouteSpec, route_spec
from schemas.fhir.capability import PAGING, RESULTS, SearchParam

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar import Litestar, Request, Router

    from schemas.fhir.capability import ResourceCapability

__all__ = ("Described", "OpenApiDocument", "describe")

_PATH_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+):[^}]+\}")
_FHIR = "application/fhir+json"
_FORM = "application/x-www-form-urlencoded"
_ERRORS = ("400", "403", "404", "405", "406", "409", "412", "413", "415", "422", "429", "503")
_REF = "#/components/schemas/"
_GENERAL = {
    "_format": "Only JSON is served: `json`, `application/json` or `application/fhir+json`.",
    "_pretty": "`true` indents the answer.",
    "_since": "Versions recorded at or after this instant (with a time zone) or date.",
    "_cursor": "Opaque position of the next page (the Bundle's `next` link carries it).",
}
_ENUMS = {
    "_summary": ["true", "text", "data", "count", "false"],
    "_total": ["none", "estimate", "accurate"],
    "_pretty": ["true", "false"],
}
_SCHEMAS: dict[str, Any] = {
    "FhirResource": {
        "type": "object",
        "description": "A FHIR R4 resource (JSON); its resourceType says which.",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}},
    },
    "OperationOutcome": {
        "type": "object",
        "description": "Every error, on every route: an OperationOutcome whose issues carry codes of the ief-error "
        "CodeSystem.",
        "required": ["resourceType", "issue"],
        "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]}, "issue": {"type": "array"}},
    },
    "OAuthError": {
        "type": "object",
        "description": "An RFC 6749 §5.2 error of the token endpoint.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
    "TokenRequest": {
        "type": "object",
        "description": "Client credentials (RFC 6749 §4.4) with private_key_jwt (SMART Backend Services), or a "
        "client secret where the operator allows them.",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "scope": {"type": "string"},
            "client_assertion_type": {
                "type": "string",
                "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
            },
            "client_assertion": {"type": "string"},
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
        },
    },
}


def _documentation(capabilities: Iterable[ResourceCapability]) -> dict[str, SearchParam]:
    """Every query name a FHIR route takes, with the search parameter that documents it."""
    found: dict[str, SearchParam] = {}
    for param in (*PAGING, *RESULTS):
        found.setdefault(param.name, param)
    for capability in capabilities:
        for param in capability.search:
            for name in param.accepted:
                found.setdefault(name, param)
    return found


def _content(schema: str, media_types: Iterable[str]) -> dict[str, Any]:
    return {media: {"schema": {"$ref": f"{_REF}{schema}"}} for media in sorted(media_types)}


def _parameters(operation: dict[str, Any], spec: RouteSpec, documented: dict[str, SearchParam]) -> None:
    present = {p["name"] for p in operation.get("parameters", [])}
    added = []
    for name in sorted(spec.query - present):
        param = documented.get(name)
        schema: dict[str, Any] = {"type": "string"}
        if name in _ENUMS:
            schema["enum"] = _ENUMS[name]
        description = param.documentation if param is not None else _GENERAL.get(name, "")
        added.append({"name": name, "in": "query", "required": False, "schema": schema, "description": description})
    if added:
        operation["parameters"] = [*operation.get("parameters", []), *added]


def _fhir_operation(operation: dict[str, Any], method: str, path: str, spec: RouteSpec) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, response in list(responses.items()):
        if status.startswith("2") and response.get("content"):
            response["content"] = _content("FhirResource", [_FHIR])
    if method in ("post", "put"):
        schema = "FhirResource"
        description = "a Parameters resource" if "$" in path else "the resource"
        operation["requestBody"] = {
            "required": "$" not in path,
            "description": f"FHIR JSON: {description}",
            "content": _content(schema, spec.media_types),
        }


def _success(operation: dict[str, Any], method: str, path: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, response in responses.items():  # an answer of raw bytes: any JSON, not a string
        json = (response.get("content") or {}).get("application/json")
        if status.startswith("2") and json is not None and json.get("schema") == {"type": "string"}:
            json["schema"] = {"type": "object"}
    existing = next((r for s, r in responses.items() if s.startswith("2")), None)
    if existing is None:
        return
    also = {"put": ("200", "201"), "post": ("200", "201") if "$" not in path else ()}.get(method, ())
    for status in also:
        responses.setdefault(status, {**existing, "description": "Created" if status == "201" else "OK"})


def _errors(operation: dict[str, Any], spec: RouteSpec, *, token: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = _ERRORS if spec.public else ("401", *_ERRORS)
    schema, media = ("OAuthError", "application/json") if token else ("OperationOutcome", _FHIR)
    for status in [*statuses, *(s for s in responses if s[:1] in "45")]:  # Litestar's own 400 is ours too
        responses[status] = {"description": "Refused", "content": _content(schema, [media])}


def describe(document: dict[str, Any], app: Litestar, capabilities: Iterable[ResourceCapability]) -> dict[str, Any]:
    """The generated OpenAPI ``document`` completed from the routes' declarations (see the module docstring)."""
    documented = _documentation(capabilities)
    document.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = _PATH_PARAMETER.sub(r"{\1}", route.path)
        item = document.get("paths", {}).get(path)
        if item is None:
            continue
        for handler in route.route_handlers:
            spec = route_spec(handler)
            for method in handler.http_methods:
                operation = item.get(method.lower())
                if operation is None:
                    continue
                operation["security"] = [] if spec.public else [{"bearer": []}]
                _parameters(operation, spec, documented)
                token = _FORM in spec.media_types
                if path.startswith("/fhir") and not path.startswith("/fhir/.well-known"):
                    _fhir_operation(operation, method.lower(), path, spec)
                elif token:
                    operation["requestBody"] = {"required": True, "content": _content("TokenRequest", [_FORM])}
                _success(operation, method.lower(), path)
                _errors(operation, spec, token=token)
    return document


class OpenApiDocument:
    """The completed OpenAPI document of one app, built on first use."""

    def __init__(self, capabilities: Iterable[ResourceCapability]) -> None:
        self._capabilities = tuple(capabilities)
        self._document: dict[str, Any] | None = None

    def of(self, app: Litestar) -> dict[str, Any]:
        """The document, completed from ``app``'s routes (see the module docstring)."""
        if self._document is None:
            self._document = describe(app.openapi_schema.to_schema(), app, self._capabilities)
        return self._document


class Described(OpenAPIRenderPlugin):
    """One of Litestar's documentation pages or files (ReDoc, Swagger UI, JSON, YAML) showing the completed
    document of the app (``app.state.openapi_document``) rather than Litestar's own draft of it."""

    def __init__(self, page: OpenAPIRenderPlugin) -> None:
        super().__init__(path=page.paths, media_type=page.media_type, favicon=page.favicon, style=page.style)
        self.page = page

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The page, or file, of the completed document (``openapi_schema``, Litestar's draft, is not shown)."""
        document: OpenApiDocument = request.app.state.openapi_document
        return self.page.render(request, document.of(request.app))

    def receive_router(self, router: Router) -> None:
        """The routes the page adds besides its own (Swagger UI's OAuth 2 redirect page)."""
        self.page.receive_router(router)
