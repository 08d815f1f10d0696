"""The one error tree of ief-registry. Raised anywhere; rendered as OperationOutcome in ``outcome.py``.

No HTTP here: each class names what went wrong, with a default code from the catalogue of
``schemas.errors`` (a raise may name a more precise one of the same status, and an issue one of its
own); the code decides the status (``registry.outcome``).

RegistryError                                   (code)
├── RequestError                                the caller's request cannot be served as sent
│   ├── MalformedRequest     400 malformed-request       not parseable (bad JSON, bad NDJSON line, bad query syntax)
│   ├── UnknownParameter     400 unknown-parameter       a query parameter this endpoint does not define
│   ├── InvalidInput         422 invalid-input           well-formed but invalid (invalid-ihi, invalid-resource…)
│   │   └── UnknownService   422 unknown-service         a record names a service that is not known or not enabled
│   ├── PayloadTooLarge      413 too-large               body or batch over its limit
│   ├── UnsupportedMediaType 415 unsupported-media-type  body in a media type this endpoint does not take
│   └── NotAcceptable        406 unsupported-format      a response format (`_format`) this server does not produce
├── AuthError
│   ├── Unauthenticated      401 unauthenticated         no token (invalid-token, token-expired: one that does not do)
│   └── Forbidden            403 forbidden               not allowed this (scope-missing, service-binding)
├── NotFound                 404 not-found               no such resource or route
├── MethodNotAllowed         405 method-not-allowed      route exists, method does not
├── Conflict                 409 conflict                a real conflict (not a repeated identical write)
├── PreconditionFailed       412 precondition-failed     a condition of the request does not hold (version-mismatch)
├── RateLimited              429 rate-limited            too many requests from this client
└── DependencyUnavailable    503 unavailable             a dependency cannot be reached (database-unavailable)
    └── OutboundAuthError    503 outbound-credentials    this server could not get credentials for a member service
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import ERRORS, ErrorCode

__all__ = (
    "AuthError",
    "Conflict",
    "DependencyUnavailable",
    "ErrorCode",
    "Forbidden",
    "InvalidInput",
    "Issue",
    "MalformedRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "OutboundAuthError",
    "PayloadTooLarge",
    "PreconditionFailed",
    "RateLimited",
    "RegistryError",
    "RequestError",
    "Unauthenticated",
    "UnknownParameter",
    "UnknownService",
    "UnsupportedMediaType",
)


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with a request: what is wrong, where (a FHIRPath or JSON path), and its own code if
    it is more precise than the error's."""

    message: str
    expression: str | None = None
    code: ErrorCode | None = None


class RegistryError(Exception):
    """Root of every error the project raises on purpose.

    ``code`` is the error's code: the class's own unless the raise names a more precise one, which
    must have the same HTTP status as the class's (the class's place in the tree decides the status).
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, issues: list[Issue] | None = None, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues if issues else [Issue(message)]
        if code is not None:
            assert ERRORS[code].status == ERRORS[type(self).code].status, f"{code} does not fit {type(self).__name__}"
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, issues={self.issues!r})"


class RequestError(RegistryError):
    """The request cannot be served as sent."""

    code = ErrorCode.MALFORMED_REQUEST


class MalformedRequest(RequestError):
    """The request is not parseable: bad JSON, bad NDJSON line, bad parameter syntax."""

    code = ErrorCode.MALFORMED_REQUEST


class UnknownParameter(RequestError):
    """A query parameter the endpoint does not define (or too many of them)."""

    code = ErrorCode.UNKNOWN_PARAMETER


class InvalidInput(RequestError):
    """Well-formed but invalid: a bad IHI, an unknown status, an invalid FHIR resource."""

    code = ErrorCode.INVALID_INPUT


class UnknownService(InvalidInput):
    """A record names a service the directory does not know, or one that is disabled."""

    code = ErrorCode.UNKNOWN_SERVICE


class PayloadTooLarge(RequestError):
    """A body or a batch over its limit."""

    code = ErrorCode.TOO_LARGE


class UnsupportedMediaType(RequestError):
    """A body in a media type the endpoint does not accept."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class NotAcceptable(RequestError):
    """The request asks for a response format the server does not produce."""

    code = ErrorCode.UNSUPPORTED_FORMAT


class AuthError(RegistryError):
    """Authentication or authorization refused the request."""

    code = ErrorCode.FORBIDDEN


class Unauthenticated(AuthError):
    """No bearer token, or one that does not verify.

    ``token_sent`` says whether the request carried a bearer token at all: the challenge then names
    ``error="invalid_token"`` (RFC 6750 §3.1); without one it is a bare ``Bearer`` challenge. The
    code follows: ``invalid-token`` (or a more precise one, ``token-expired``), else ``unauthenticated``.
    """

    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, message: str, *, token_sent: bool = True, code: ErrorCode | None = None) -> None:
        super().__init__(message, code=code or (ErrorCode.INVALID_TOKEN if token_sent else None))
        self.token_sent = token_sent


class Forbidden(AuthError):
    """The caller is known but not allowed to do this."""

    code = ErrorCode.FORBIDDEN


class NotFound(RegistryError):
    """No such resource or route."""

    code = ErrorCode.NOT_FOUND


class MethodNotAllowed(RegistryError):
    """The route exists but not with this method."""

    code = ErrorCode.METHOD_NOT_ALLOWED


class Conflict(RegistryError):
    """A real conflict with stored state."""

    code = ErrorCode.CONFLICT


class PreconditionFailed(RegistryError):
    """A condition the request sets on stored state does not hold: a version (If-Match), or criteria
    that do not select exactly one record."""

    code = ErrorCode.PRECONDITION_FAILED


class RateLimited(RegistryError):
    """The client sent more requests than its limit allows."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DependencyUnavailable(RegistryError):
    """A dependency (usually the database) cannot be reached.

    ``retry_after`` (seconds) is when another try may succeed: a database failover or a restarting
    peer is usually over in seconds, and a client that waits a little does not add to the storm.
    """

    code = ErrorCode.UNAVAILABLE
    retry_after: int = 2


class OutboundAuthError(DependencyUnavailable):
    """This server could not get credentials to call a member service (discovery, token request, token file)."""

    code = ErrorCode.OUTBOUND_CREDENTIALS
