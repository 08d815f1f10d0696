"""Errors become FHIR OperationOutcome responses here, and only here.

Every exception that reaches Litestar (ours, Litestar's own, or an unexpected one) is turned into
an ``application/fhir+json`` OperationOutcome with the status DESIGN section 4 assigns and an
error code from the catalogue of ``schemas.errors`` in every issue (the body itself is built by
``schemas.fhir.outcome``). Unexpected errors are logged with their traceback and answered with a
bare 500: nothing internal leaks. What an error response says is left in the request's state
(``OUTCOME_KEY``), for its audit row.
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
from registry.log import get_logger
from registry.route import OUTCOME_KEY
from schemas.errors import ERRORS, ErrorCode
from schemas.fhir.outcome import error_outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar import Request
    from litestar.config.app import AppConfig

    from schemas.fhir.canonical import Canonicals

__all__ = ("FHIR_JSON", "OperationOutcomePlugin", "Said", "outcome_body", "status_of")

FHIR_JSON = "application/fhir+json"

Said = tuple[str, str | None, ErrorCode | None]
"""One issue of an error answer: the diagnostics, where (an expression), and its own code if it has one."""

_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.MALFORMED_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.UNSUPPORTED_FORMAT,
    409: ErrorCode.CONFLICT,
    412: ErrorCode.PRECONDITION_FAILED,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_INPUT,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}
"""The code of an error Litestar raises itself, by its status."""

_PATH = re.compile(r" - at `\$(?:\.data)?\.?([^`]*)`\Z")
_UNEXPECTED = "the server could not complete the request"
_log = get_logger(__name__)


def status_of(code: ErrorCode) -> int:
    """The HTTP status an error code is answered with."""
    return ERRORS[code].status


def outcome_body(canon: Canonicals, code: ErrorCode, issues: Sequence[Said]) -> bytes:
    """The JSON bytes of the OperationOutcome of an error (for responses sent outside Litestar)."""
    return msgspec.json.encode(error_outcome(canon, code, issues))


class OperationOutcomePlugin(InitPlugin):
    """Registers the exception handlers that render every error as an OperationOutcome."""

    def __init__(self, canon: Canonicals) -> None:
        self._canon = canon

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Install the handlers, most specific first."""
        app_config.exception_handlers.update(
            {
                errors.RegistryError: self._registry_error,
                ValidationException: self._validation_error,
                HTTPException: self._http_exception,
                Exception: self._unexpected,
            }
        )
        return app_config

    def _response(
        self,
        request: Request[Any, Any, Any],
        code: ErrorCode,
        issues: Sequence[Said],
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response[bytes]:
        request.scope.setdefault("state", {})[OUTCOME_KEY] = "; ".join(message for message, _, _ in issues)
        return Response(
            content=outcome_body(self._canon, code, issues),
            status_code=status or status_of(code),
            media_type=FHIR_JSON,
            headers=headers,
        )

    def _registry_error(self, request: Request[Any, Any, Any], exc: errors.RegistryError) -> Response[bytes]:
        headers: dict[str, str] = {}
        if isinstance(exc, errors.RateLimited | errors.DependencyUnavailable):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, errors.Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if exc.token_sent else "Bearer"
        issues = [(i.message, i.expression, i.code) for i in exc.issues]
        return self._response(request, exc.code, issues, headers=headers)

    def _validation_error(self, request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
        cause = exc.__cause__
        if isinstance(cause, msgspec.ValidationError):
            text = str(cause)
            match = _PATH.search(text)
            message = _PATH.sub("", text)
            return self._response(
                request, ErrorCode.INVALID_INPUT, [(message, match.group(1) or None if match else None, None)]
            )
        issues: list[Said] = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            if isinstance(item, dict):
                issues.append((str(item.get("message", exc.detail)), item.get("key"), None))
        return self._response(request, ErrorCode.MALFORMED_REQUEST, issues or [(exc.detail, None, None)])

    def _http_exception(self, request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        status = exc.status_code
        detail = exc.detail
        if isinstance(exc, NotFoundException) or status == 404:
            detail = "no such resource or route"
        elif status == HTTP_405_METHOD_NOT_ALLOWED:
            detail = "this route does not support this method"
        elif status == 413:
            detail = "the request body is larger than this endpoint accepts"
        elif status >= 500:
            detail = _UNEXPECTED
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")}
        if isinstance(exc, NotAuthorizedException | PermissionDeniedException):
            headers["WWW-Authenticate"] = "Bearer"
        code = _BY_STATUS.get(status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.MALFORMED_REQUEST)
        return self._response(request, code, [(detail, None, None)], status=status, headers=headers)

    def _unexpected(self, request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        _log.error("unhandled_error", route=request.scope.get("path_template"), exc_info=exc)
        return self._response(request, ErrorCode.INTERNAL_ERROR, [(_UNEXPECTED, None, None)])
