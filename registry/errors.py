"""The one error tree of ief-registry. Raised anywhere; rendered as OperationOutcome in ``outcome.py``.

No HTTP here: each class names what went wrong; ``registry.outcome`` alone decides the status.

RegistryError
├── RequestError                    the caller's request cannot be served as sent
│   ├── MalformedRequest            400 not parseable (bad JSON, bad NDJSON line, bad query syntax)
│   ├── UnknownParameter            400 a query parameter this endpoint does not define
│   ├── InvalidInput                422 well-formed but invalid (bad IHI, bad status, bad resource)
│   │   └── UnknownService          422 a record names a service that is not known or not enabled
│   ├── PayloadTooLarge             413 body or batch over its limit
│   ├── UnsupportedMediaType        415 body in a media type this endpoint does not take
│   └── NotAcceptable               406 a response format (`_format`) this server does not produce
├── AuthError
│   ├── Unauthenticated             401 no token, or a token that does not verify
│   └── Forbidden                   403 authenticated, but not allowed this
├── NotFound                        404 no such resource or route
├── MethodNotAllowed                405 route exists, method does not
├── Conflict                        409 a real conflict (not a repeated identical write)
├── PreconditionFailed              412 a condition of the request (If-Match, conditional update) does not hold
├── RateLimited                     429 too many requests from this client
└── DependencyUnavailable           503 the database (or another dependency) cannot be reached
    └── OutboundAuthError           503 this server could not get credentials for a member service
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "AuthError",
    "Conflict",
    "DependencyUnavailable",
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
    """One problem with a request: what is wrong and, where known, where (a FHIRPath or JSON path)."""

    message: str
    expression: str | None = None


class RegistryError(Exception):
    """Root of every error the project raises on purpose."""

    def __init__(self, message: str, *, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues if issues else [Issue(message)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, issues={self.issues!r})"


class RequestError(RegistryError):
    """The request cannot be served as sent."""


class MalformedRequest(RequestError):
    """The request is not parseable: bad JSON, bad NDJSON line, bad parameter syntax."""


class UnknownParameter(RequestError):
    """A query parameter the endpoint does not define."""


class InvalidInput(RequestError):
    """Well-formed but invalid: a bad IHI, an unknown status, an invalid FHIR resource."""


class UnknownService(InvalidInput):
    """A record names a service the directory does not know, or one that is disabled."""


class PayloadTooLarge(RequestError):
    """A body or a batch over its limit."""


class UnsupportedMediaType(RequestError):
    """A body in a media type the endpoint does not accept."""


class NotAcceptable(RequestError):
    """The request asks for a response format the server does not produce."""


class AuthError(RegistryError):
    """Authentication or authorization refused the request."""


class Unauthenticated(AuthError):
    """No bearer token, or one that does not verify.

    ``token_sent`` says whether the request carried a bearer token at all: the challenge then names
    ``error="invalid_token"`` (RFC 6750 §3.1); without one it is a bare ``Bearer`` challenge.
    """

    def __init__(self, message: str, *, token_sent: bool = True) -> None:
        super().__init__(message)
        self.token_sent = token_sent


class Forbidden(AuthError):
    """The caller is known but not allowed to do this."""


class NotFound(RegistryError):
    """No such resource or route."""


class MethodNotAllowed(RegistryError):
    """The route exists but not with this method."""


class Conflict(RegistryError):
    """A real conflict with stored state."""


class PreconditionFailed(RegistryError):
    """A condition the request sets on stored state does not hold: a version (If-Match), or criteria
    that do not select exactly one record."""


class RateLimited(RegistryError):
    """The client sent more requests than its limit allows."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DependencyUnavailable(RegistryError):
    """A dependency (usually the database) cannot be reached.

    ``retry_after`` (seconds) is when another try may succeed: a database failover or a restarting
    peer is usually over in seconds, and a client that waits a little does not add to the storm.
    """

    retry_after: int = 2


class OutboundAuthError(DependencyUnavailable):
    """This server could not get credentials to call a member service (discovery, token request, token file)."""
