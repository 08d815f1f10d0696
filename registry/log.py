"""Structured logging: structlog configured once, request context bound through contextvars.

JSON lines when stderr is not a terminal (encoded by msgspec and written as bytes: the standard
library's encoder cost about a third of the access line), readable console output when it is. Every line of a
request carries ``request_id``. Raw IHIs never appear: ``ihi_hash()`` gives the keyed hash that
stands for them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
from typing import Any

import msgspec
import structlog

__all__ = ("EVENTS", "configure_logging", "get_logger", "ihi_hash", "set_hash_key")

EVENTS = {
    "http_request": "one canonical line per HTTP request: method, route, status, client ID, duration",
    "server_starting": "the server is starting: address, database kind, service ID",
    "server_stopped": "the server stopped",
    "embedded_started": "the embedded PostgreSQL cluster is running",
    "embedded_stopped": "the embedded PostgreSQL cluster was stopped",
    "migrations_applied": "pending migrations were applied",
    "unhandled_error": "an unexpected error was turned into a 500 OperationOutcome",
    "batch_applied": "a batch of records was applied: counts per outcome",
    "key_created": "a signing key was created (first start): purpose (issuer or outbound), kid",
    "key_rotated": "a new active signing key replaced the old one, which stays published until its tokens expire",
    "token_issued": "the token endpoint issued an access token: client ID, scope, lifetime",
    "auth_refused": "a request was refused 401: the reason (never the token)",
    "assertion_replayed": "a client assertion whose jti was used before was refused: client ID",
    "client_jwks_unavailable": "a client's JWKS URL could not be fetched during token issuance: client ID, reason",
    "issuer_jwks_unavailable": "a trusted issuer's JWKS could not be fetched or read: issuer, reason",
    "outbound_token": "this instance got an access token from a member service: base URL, client ID, lifetime",
    "outbound_auth_failed": "this instance could not get credentials for a member service: base URL, reason",
    "audit_write_failed": "audit rows could not be written; the requests waiting on them were answered 503",
    "audit_sealed": "(debug) new audit rows were appended to the hash chain: rows, head sequence number",
    "audit_seal_failed": "appending audit rows to the hash chain failed; retried later (run `audit verify`)",
}
"""The catalogue of log events: every ``event`` value the project emits, and what it means."""

_hash_key: bytes = b""


def set_hash_key(key: bytes) -> None:
    """Set the key of the IHI hash (once, at start-up)."""
    global _hash_key  # noqa: PLW0603 - process-wide by design, set once at start
    _hash_key = key


def ihi_hash(ihi: str) -> str:
    """A keyed hash of an IHI for logs: stable within a deployment, useless without the key."""
    return hmac.new(_hash_key, ihi.encode(), hashlib.sha256).hexdigest()[:16]


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library loggers once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any
    factory: Any
    if console:
        renderer, factory = structlog.dev.ConsoleRenderer(), structlog.WriteLoggerFactory(file=sys.stderr)
    else:
        renderer, factory = _json_lines(), structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s: %(message)s")
    for noisy in ("uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _json_lines() -> Any:
    """The last processor of JSON logging: the event as one JSON object in bytes (anything unusual as its ``str``)."""
    encoder = msgspec.json.Encoder(enc_hook=str)

    def render(_logger: Any, _method: str, event: dict[str, Any]) -> bytes:
        return encoder.encode(event)

    return render


def get_logger(name: str) -> Any:
    """A structlog logger bound to a module name."""
    return structlog.get_logger(name)
