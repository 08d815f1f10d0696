"""HTTP of the built-in issuer: ``POST /auth/token``, ``/.well-known/jwks.json``, ``/.well-known/smart-configuration``.

The token endpoint is the one documented exception to "every error is an OperationOutcome": it
answers RFC 6749 §5.2 errors (``{"error": "invalid_client", …}``), because OAuth client libraries
parse them. It takes ``application/x-www-form-urlencoded`` only, and its answers are never cached.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException

from registry import errors
from registry.auth.issuer import ASSERTION_ALGORITHMS
from registry.auth.wiring import AuthParts
from registry.http import base_url
from registry.log import get_logger
from registry.route import RouteSpec
from schemas.auth import SmartConfiguration, TokenResponse

__all__ = ("FhirWellKnownController", "TokenController", "WellKnownController", "smart_configuration")

FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SCOPES_SUPPORTED = [
    "system/Basic.cu",
    "system/Basic.rs",
    "system/Endpoint.rs",
    "system/ImagingStudy.rs",
    "system/DocumentReference.rs",
    "system/Subscription.cruds",
    "system/AuditEvent.rs",
    "admin",
]
_log = get_logger("registry.auth")


def _oauth_response(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response[Any]:
    body = {"error": error, "error_description": description}
    return Response(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def _oauth_error(_request: Request[Any, Any, Any], exc: OAuth2Error) -> Response[Any]:
    status, body, headers = exc()
    extra = {name: value for name, value in headers if name.lower() == "www-authenticate"}
    return _oauth_response(status, body["error"], body.get("error_description", ""), extra)


def _registry_error(_request: Request[Any, Any, Any], exc: errors.RegistryError) -> Response[Any]:
    if isinstance(exc, errors.RateLimited):
        return _oauth_response(429, "slow_down", exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, errors.DependencyUnavailable):
        return _oauth_response(503, "temporarily_unavailable", exc.message, {"Retry-After": str(exc.retry_after)})
    return _oauth_response(400, "invalid_request", exc.message)


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        return _oauth_response(500, "server_error", "the server could not complete the request")
    return _oauth_response(400, "invalid_request", "the request is not a valid token request")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    _log.error("unhandled_error", route=request.scope.get("path_template"), exc_info=exc)
    return _oauth_response(500, "server_error", "the server could not complete the request")


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError(description="the body is not application/x-www-form-urlencoded") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise InvalidRequestError(description="a parameter is repeated")
    return form


async def issue_token(request: Request[Any, Any, Any], auth: AuthParts) -> Response[TokenResponse]:
    """Run the client-credentials grant for one request; failed client authentication costs the address."""
    form = _form(await request.body())
    try:
        token = await auth.token_endpoint.grant(
            form,
            authorization=request.headers.get("authorization"),
            token_urls=[f"{base_url(request)}/auth/token"],
        )
    except InvalidClientError:
        auth.failures.take(request.client.host if request.client else "(unknown)")
        raise
    response = TokenResponse(access_token=token.access_token, expires_in=token.expires_in, scope=token.scope)
    return Response(response, headers=_NO_STORE)


class TokenController(Controller):
    """``POST /auth/token``: client credentials (``private_key_jwt``, or a client secret where allowed)."""

    path = "/auth/token"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads this class attribute as is
    exception_handlers = {  # noqa: RUF012 - Litestar reads this class attribute as is
        OAuth2Error: _oauth_error,
        errors.RegistryError: _registry_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }

    @post("/", operation_id="token", status_code=200, opt=RouteSpec(public=True, media_types=frozenset({FORM})).opt)
    async def token(self, request: Request[Any, Any, Any], auth: NamedDependency[AuthParts]) -> Response[TokenResponse]:
        """Exchange client credentials for an access token (RFC 6749 §4.4, SMART Backend Services)."""
        return await issue_token(request, auth)


class FhirWellKnownController(Controller):
    """SMART discovery where SMART App Launch 2 clients look for it: under the FHIR base (JSON, not FHIR)."""

    path = "/fhir/.well-known"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/smart-configuration", operation_id="fhirSmartConfiguration", opt=RouteSpec(public=True).opt)
    async def smart_configuration(
        self, request: Request[Any, Any, Any], auth: NamedDependency[AuthParts]
    ) -> SmartConfiguration:
        """SMART discovery: the token endpoint, the JWKS, what client authentication is accepted."""
        return smart_configuration(request, auth)


class WellKnownController(Controller):
    """Discovery documents: the keys that verify this instance's signatures, and SMART configuration."""

    path = "/.well-known"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/jwks.json", operation_id="jwks", opt=RouteSpec(public=True).opt)
    async def jwks(self, auth: NamedDependency[AuthParts]) -> Response[bytes]:
        """The public keys of the built-in issuer and of this instance's outbound key pair."""
        keys = await auth.keys.fresh()
        return Response(
            msgspec.json.encode(keys.jwks), media_type="application/json", headers={"Cache-Control": "max-age=60"}
        )

    @get("/smart-configuration", operation_id="smartConfiguration", opt=RouteSpec(public=True).opt)
    async def smart_configuration(
        self, request: Request[Any, Any, Any], auth: NamedDependency[AuthParts]
    ) -> SmartConfiguration:
        """SMART discovery: the token endpoint, the JWKS, what client authentication is accepted."""
        return smart_configuration(request, auth)


def smart_configuration(request: Request[Any, Any, Any], auth: AuthParts) -> SmartConfiguration:
    """This server's SMART configuration as seen through ``request``'s base URL."""
    base = base_url(request)
    allow_secrets = auth.allow_client_secrets
    methods = ["private_key_jwt"] + (["client_secret_basic", "client_secret_post"] if allow_secrets else [])
    capabilities = ["client-confidential-asymmetric"] + (["client-confidential-symmetric"] if allow_secrets else [])
    capabilities += ["permission-v2", "permission-v1"]
    issuer = auth.issuer.issuer
    return SmartConfiguration(
        issuer=issuer if issuer.startswith("https://") else None,
        jwks_uri=f"{base}/.well-known/jwks.json",
        token_endpoint=f"{base}/auth/token",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=methods,
        token_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        scopes_supported=_SCOPES_SUPPORTED,
        capabilities=capabilities,
    )
