"""The catalogue of error codes: what went wrong, in a form a client can branch on (DESIGN §4).

Every error answered carries one of these codes in each issue of its OperationOutcome
(``issue.details.coding``, system ``{canonical base}/CodeSystem/ief-error``, published by the
server like the other conformance resources); ``diagnostics`` says the same for people. Each code
has one HTTP status; the FHIR ``IssueType`` of the issue follows from the status. The catalogue is
documented in ``docs/fhir.md`` ("Errors"), and the CodeSystem is generated from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ("ERRORS", "ErrorCode", "ErrorKind")


class ErrorCode(enum.StrEnum):
    """Every error code the server answers with."""

    MALFORMED_REQUEST = "malformed-request"
    JSON_TOO_DEEP = "json-too-deep"
    JSON_DUPLICATE_KEY = "json-duplicate-key"
    UNKNOWN_PARAMETER = "unknown-parameter"
    TOO_MANY_PARAMETERS = "too-many-parameters"
    INVALID_INPUT = "invalid-input"
    INVALID_IHI = "invalid-ihi"
    INVALID_SERVICE_ID = "invalid-service-id"
    INVALID_RESOURCE = "invalid-resource"
    UNKNOWN_SERVICE = "unknown-service"
    ADDRESS_REFUSED = "address-refused"
    TOO_LARGE = "too-large"
    REQUEST_HEAD_TOO_LARGE = "request-head-too-large"
    REQUEST_HEAD_TIMEOUT = "request-head-timeout"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    UNSUPPORTED_FORMAT = "unsupported-format"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid-token"  # noqa: S105 - an error code, not a secret
    TOKEN_EXPIRED = "token-expired"  # noqa: S105 - an error code, not a secret
    FORBIDDEN = "forbidden"
    ENUMERATION = "enumeration"
    PURPOSE_NOT_ALLOWED = "purpose-not-allowed"
    PURPOSE_REQUIRED = "purpose-required"
    INVALID_PRIVACY_CONTEXT = "invalid-privacy-context"
    WITHHELD = "withheld"
    SCOPE_MISSING = "scope-missing"
    SERVICE_BINDING = "service-binding"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    CONFLICT = "conflict"
    OPERATOR_DECISION = "operator-decision"
    IDEMPOTENCY_IN_PROGRESS = "idempotency-in-progress"
    SERVICE_RETIRED = "service-retired"
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"
    TYPE_MISMATCH = "type-mismatch"
    PRECONDITION_FAILED = "precondition-failed"
    VERSION_MISMATCH = "version-mismatch"
    RATE_LIMITED = "rate-limited"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    UNAVAILABLE = "unavailable"
    DATABASE_UNAVAILABLE = "database-unavailable"
    OUTBOUND_CREDENTIALS = "outbound-credentials"
    AUDIT_UNAVAILABLE = "audit-unavailable"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One code of the catalogue: its HTTP status, a display name and what it means."""

    status: int
    display: str
    definition: str


ERRORS: dict[ErrorCode, ErrorKind] = {
    ErrorCode.MALFORMED_REQUEST: ErrorKind(
        400,
        "Malformed request",
        "The request cannot be read as sent: a body that is not JSON (or a bad NDJSON line), a query value of the "
        "wrong syntax (_count, _offset, If-Match, a paging cursor), a search that names nothing to search by, an "
        "update whose body has no id or another id than the URL.",
    ),
    ErrorCode.JSON_TOO_DEEP: ErrorKind(
        400,
        "JSON too deep",
        "A JSON body (or NDJSON line) whose arrays and objects are nested deeper than this server "
        "reads (32 levels); refused before it is decoded.",
    ),
    ErrorCode.JSON_DUPLICATE_KEY: ErrorKind(
        400,
        "JSON duplicate key",
        "A JSON object that names one key twice, which readers of it could each take differently (the "
        "diagnostics name the key).",
    ),
    ErrorCode.UNKNOWN_PARAMETER: ErrorKind(
        400, "Unknown parameter", "A query parameter this route does not define (the issue's expression names it)."
    ),
    ErrorCode.TOO_MANY_PARAMETERS: ErrorKind(
        400,
        "Too many parameters",
        "More query parameter values than one request may carry (IEF_HTTP_MAX_QUERY_PARAMS).",
    ),
    ErrorCode.INVALID_INPUT: ErrorKind(
        422,
        "Invalid input",
        "Well-formed but invalid: an unknown status or code, a value out of range, a body that breaks a rule of "
        "its resource (the issue's expression says where).",
    ),
    ErrorCode.INVALID_IHI: ErrorKind(
        422,
        "Invalid IHI",
        "An Individual Healthcare Identifier that is not one: not 16 digits, not starting 800360, a wrong Luhn "
        "check digit, or given with another identifier system.",
    ),
    ErrorCode.INVALID_SERVICE_ID: ErrorKind(
        422,
        "Invalid service ID",
        "A service ID that is neither a UUID nor a ULID, or given with another identifier system.",
    ),
    ErrorCode.INVALID_RESOURCE: ErrorKind(
        422,
        "Invalid resource",
        "The body is JSON but not a valid resource of the route's type or profile (one issue per problem).",
    ),
    ErrorCode.UNKNOWN_SERVICE: ErrorKind(
        422,
        "Unknown service",
        "A record names a service that is not in the services directory, or is disabled or retired.",
    ),
    ErrorCode.ADDRESS_REFUSED: ErrorKind(
        422,
        "Address refused",
        "A URL this server would call (a subscription endpoint, a member's base URL or token endpoint, a JWKS URL) "
        "that the outbound address policy refuses: not https, credentials in it, or a host that resolves to a "
        "loopback, private, link-local or otherwise local address not allowed by the operator.",
    ),
    ErrorCode.TOO_LARGE: ErrorKind(
        413, "Too large", "A request body, or a batch, over its limit (IEF_HTTP_MAX_BODY_BYTES, the batch limits)."
    ),
    ErrorCode.REQUEST_HEAD_TOO_LARGE: ErrorKind(
        431,
        "Request head too large",
        "The request line and headers are larger than this server reads (IEF_HTTP_MAX_HEADER_BYTES); answered "
        "before the application, and the connection closed.",
    ),
    ErrorCode.REQUEST_HEAD_TIMEOUT: ErrorKind(
        408,
        "Request head timeout",
        "The request line and headers did not arrive in time (IEF_HTTP_HEADER_TIMEOUT); answered before the "
        "application, and the connection closed.",
    ),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorKind(
        415, "Unsupported media type", "A body in a media type this route does not take."
    ),
    ErrorCode.UNSUPPORTED_FORMAT: ErrorKind(
        406, "Unsupported format", "A response format (_format) this server does not produce: it speaks JSON only."
    ),
    ErrorCode.UNAUTHENTICATED: ErrorKind(401, "Unauthenticated", "The request carries no bearer token."),
    ErrorCode.INVALID_TOKEN: ErrorKind(
        401,
        "Invalid token",
        "The bearer token is malformed (not a compact JWS, or a header or claim of the wrong type), does not "
        "verify (signature, issuer, audience, algorithm, claims) or belongs to an unknown or disabled client.",
    ),
    ErrorCode.TOKEN_EXPIRED: ErrorKind(401, "Token expired", "The bearer token has expired: get a new one."),
    ErrorCode.FORBIDDEN: ErrorKind(403, "Forbidden", "The caller is known but may not do this."),
    ErrorCode.ENUMERATION: ErrorKind(
        403,
        "Enumeration refused",
        "A search that would list patients without naming one (`Basic?service=X`) by a client not bound to that "
        "service and without admin.",
    ),
    ErrorCode.PURPOSE_NOT_ALLOWED: ErrorKind(
        403,
        "Purpose not allowed",
        "The purpose of use stated (IEF-Purpose-Of-Use or the token's purpose_of_use) is not one the client is "
        "registered to state.",
    ),
    ErrorCode.PURPOSE_REQUIRED: ErrorKind(
        400,
        "Purpose required",
        "A read of patient-linked data states no purpose of use, and this server requires one "
        "(IEF_PRIVACY_REQUIRE_PURPOSE).",
    ),
    ErrorCode.INVALID_PRIVACY_CONTEXT: ErrorKind(
        422,
        "Invalid privacy context",
        "IEF-Purpose-Of-Use is not one v3 PurposeOfUse code, or IEF-On-Behalf-Of is not an HPI-I (16 digits, "
        "800361, Luhn), or either is repeated.",
    ),
    ErrorCode.WITHHELD: ErrorKind(
        403,
        "Withheld",
        "The resource read by id is withheld from this requester (the patient's consent or its security labels); "
        "what is withheld is not said.",
    ),
    ErrorCode.SCOPE_MISSING: ErrorKind(
        403, "Scope missing", "The token does not grant a scope this route needs (the diagnostics name it)."
    ),
    ErrorCode.SERVICE_BINDING: ErrorKind(
        403,
        "Service binding",
        "The client is bound to another service than the record it writes names, and does not hold admin.",
    ),
    ErrorCode.NOT_FOUND: ErrorKind(404, "Not found", "No such route, resource type or resource."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorKind(
        405, "Method not allowed", "The route exists but not with this method (records are never deleted)."
    ),
    ErrorCode.CONFLICT: ErrorKind(
        409, "Conflict", "A real conflict with stored state (a concurrent write rolled back: repeat it)."
    ),
    ErrorCode.OPERATOR_DECISION: ErrorKind(
        409,
        "Operator decision",
        "The operator removed or archived this record (the diagnostics say when, and why); only the operator can "
        "change it. Nothing was stored.",
    ),
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: ErrorKind(
        409,
        "Idempotency key in progress",
        "A request with the same Idempotency-Key from this client is still being processed: repeat this one later.",
    ),
    ErrorCode.SERVICE_RETIRED: ErrorKind(
        409, "Service retired", "The service is retired (services retire): it cannot be enabled or written to again."
    ),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: ErrorKind(
        422,
        "Idempotency key reused",
        "This client sent the same Idempotency-Key within 24 hours with another request (method, target or body).",
    ),
    ErrorCode.TYPE_MISMATCH: ErrorKind(
        422,
        "Type mismatch",
        "A record's type does not match its service's kind: a `registry` record names a registry, a `record` a "
        "gateway.",
    ),
    ErrorCode.PRECONDITION_FAILED: ErrorKind(
        412,
        "Precondition failed",
        "A condition of the request does not hold: conditional update criteria that do not name exactly one record.",
    ),
    ErrorCode.VERSION_MISMATCH: ErrorKind(
        412, "Version mismatch", "If-Match names another version than the stored one (or the record does not exist)."
    ),
    ErrorCode.RATE_LIMITED: ErrorKind(
        429, "Rate limited", "Too many requests from this client, or failed authentications from this address."
    ),
    ErrorCode.TOO_MANY_CONNECTIONS: ErrorKind(
        429,
        "Too many connections",
        "This address holds as many connections to one server process as it may "
        "(IEF_HTTP_MAX_CONNECTIONS_PER_ADDRESS); the new one is answered and closed, Retry-After says when to try "
        "again.",
    ),
    ErrorCode.UNAVAILABLE: ErrorKind(
        503, "Unavailable", "A dependency cannot be reached now; Retry-After says when to try again."
    ),
    ErrorCode.DATABASE_UNAVAILABLE: ErrorKind(
        503,
        "Database unavailable",
        "The database cannot be reached, did not answer in time, or refuses writes (a failover in progress).",
    ),
    ErrorCode.OUTBOUND_CREDENTIALS: ErrorKind(
        503, "Outbound credentials", "This server could not get credentials to call a member service."
    ),
    ErrorCode.AUDIT_UNAVAILABLE: ErrorKind(
        503,
        "Audit unavailable",
        "The request's audit row could not be written, so it was not answered (nothing is disclosed unaudited).",
    ),
    ErrorCode.INTERNAL_ERROR: ErrorKind(
        500, "Internal error", "The server could not complete the request; nothing internal is said."
    ),
}
"""Each code's status, display and definition (the published CodeSystem and the documented catalogue)."""
