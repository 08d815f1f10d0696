"""Errors become FHIR OperationOutcome responses here, and only here.

Every exception that reaches Litestar (ours, Litestar's own, or an unexpected one) is turned into
an ``application/fhir+json`` OperationOutcome with the status DESIGN section 4 assigns. Unexpected
errors are logged with their traceback and answered with a bare 500: nothing internal leaks.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.plugins import InitPlugin
from litestar.status_codes import HTTP_405_METHOD_NOT_ALLOWED

from registry import errors
from registry.audit.context import note_detail
from registry.log import get_logger
from schemas.fhir.outcome import operation_outcome

if TYPE_CHECKING:
    from litestar import Request
    from litestar.config.app import AppConfig

__all__ = ("FHIR_JSON", "OperationOutcomePlugin", "outcome_body", "outcome_response")

FHIR_JSON = "application/fhir+json"

_STATUS: list[tuple[type[errors.RegistryError], int]] = [
    (errors.MalformedRequest, 400),
    (errors.UnknownParameter, 400),
    (errors.InvalidInput, 422),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.NotAcceptable, 406),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 412),
    (errors.RateLimited, 429),
    (errors.DependencyUnavailable, 503),
]
_PATH = re.compile(r" - at `\$(?:\.data)?\.?([^`]*)`\Z")
_log = get_logger(__name__)


def status_of(exc: errors.RegistryError) -> int:
    """The HTTP status of a domain error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def outcome_body(status: int, issues: list[tuple[str, str | None]]) -> bytes:
    """The JSON bytes of an OperationOutcome for ``status`` (for responses sent outside Litestar)."""
    return msgspec.json.encode(operation_outcome(status, issues))


def outcome_response(
    status: int, issues: list[tuple[str, str | None]], headers: dict[str, str] | None = None
) -> Response[bytes]:
    """An OperationOutcome response with the given status (its issues also go into the request's audit row)."""
    note_detail("; ".join(message for message, _ in issues))
    return Response(content=outcome_body(status, issues), status_code=status, media_type=FHIR_JSON, headers=headers)


def _registry_error(_request: Request[Any, Any, Any], exc: errors.RegistryError) -> Response[bytes]:
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RateLimited | errors.DependencyUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if exc.token_sent else "Bearer"
    return outcome_response(status_of(exc), [(i.message, i.expression) for i in exc.issues], headers)


def _validation_error(_request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    cause = exc.__cause__
    if isinstance(cause, msgspec.ValidationError):
        text = str(cause)
        match = _PATH.search(text)
        message = _PATH.sub("", text)
        return outcome_response(422, [(message, match.group(1) or None if match else None)])
    issues: list[tuple[str, str | None]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            issues.append((str(item.get("message", exc.detail)), item.get("key")))
    return outcome_response(400, issues or [(exc.detail, None)])


def _http_exception(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail
    if isinstance(exc, NotFoundException) or status == 404:
        detail = "no such resource or route"
    elif status == HTTP_405_METHOD_NOT_ALLOWED:
        detail = "this route does not support this method"
    elif status == 413:
        detail = "the request body is larger than this endpoint accepts"
    elif status >= 500:
        detail = "the server could not complete the request"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")}
    if isinstance(exc, NotAuthorizedException | PermissionDeniedException):
        headers["WWW-Authenticate"] = "Bearer"
    return outcome_response(status, [(detail, None)], headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    _log.error("unhandled_error", route=request.scope.get("path_template"), exc_info=exc)
    return outcome_response(500, [("the server could not complete the request", None)])


class OperationOutcomePlugin(InitPlugin):
    """Registers the exception handlers that render every error as an OperationOutcome."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Install the handlers, most specific first."""
        app_config.exception_handlers.update(
            {
                errors.RegistryError: _registry_error,
                ValidationException: _validation_error,
                HTTPException: _http_exception,
                Exception: _unexpected,
            }
        )
        return app_config
