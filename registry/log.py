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
    "request_refused": "the server refused a connection or request before the application: head too large (431), "
    "head not complete in time (408), too many connections from one address (429); reason, size or address",
    "server_starting": "the server is starting: address, database kind, service ID",
    "server_ready": "the server answers: the URL of its index (`/`), which answered 200",
    "server_stopped": "the server stopped (logged only when it had started)",
    "embedded_started": "the embedded PostgreSQL cluster is running",
    "embedded_stopped": "the embedded PostgreSQL cluster was stopped",
    "embedded_stale_lock": "a lock file left by a server that did not shut down named another live process: "
    "moved aside (`*.stale`) before the cluster started",
    "migrations_applied": "pending migrations were applied",
    "database_waiting": "at start, the database could not be reached or refused writes: the reason, attempts, "
    "seconds waited and the limit (IEF_DATABASE_STARTUP_WAIT); logged again every 10 s while waiting",
    "database_reachable": "at start, the database answered after waiting: attempts, seconds waited",
    "replica_unavailable": "the read replica could not be reached; look-ups use the primary until it answers again",
    "unhandled_error": "an unexpected error was turned into a 500 OperationOutcome",
    "batch_applied": "a batch of records was applied: counts per outcome",
    "key_created": "a signing key was created (first start): purpose (issuer, outbound or audit), kid",
    "key_rotated": "a new active signing key replaced the old one, which stays published until its tokens expire",
    "token_issued": "the token endpoint issued an access token: client ID, scope, lifetime",
    "auth_refused": "a request was refused 401: the reason (never the token)",
    "assertion_replayed": "a client assertion whose jti was used before was refused: client ID",
    "client_jwks_unavailable": "a client's JWKS URL could not be fetched during token issuance: client ID, reason",
    "issuer_jwks_unavailable": "a trusted issuer's JWKS could not be fetched or read: issuer, reason",
    "outbound_token": "this instance got an access token from a member service: base URL, client ID, lifetime",
    "outbound_auth_failed": "this instance could not get credentials for a member service: base URL, reason "
    "(the URLs tried and what the other side answered: logged here, never told to consumers)",
    "outbound_refused": "an outbound call was not made: its host resolves to an address the policy refuses "
    "(host, address); allow it with IEF_OUTBOUND_ALLOWED_* or IEF_SUBSCRIPTIONS_ALLOWED_*",
    "outbound_unresolved": "a URL an operator added does not resolve yet; it is checked again at every connection",
    "audit_write_failed": "audit rows could not be written; the requests waiting on them were answered 503",
    "audit_sealed": "(debug) new audit rows were appended to the hash chain: rows, head sequence number",
    "audit_seal_failed": "appending audit rows to the hash chain failed; retried later (run `audit verify`)",
    "audit_month_sealed": "an audit month was closed, chained to its last row and its checkpoint signed: month, head",
    "audit_months_made": "audit partitions were made ahead of time: how many months",
    "audit_months_failed": "audit partitions could not be made ahead (database down, lock not had); retried soon",
    "subscription_created": "a subscription was created (requested): subscription ID, client ID, payload content",
    "subscription_updated": "a client changed a subscription: subscription ID, status before and after, handshake",
    "subscription_deleted": "a client deleted a subscription: subscription ID, client ID",
    "subscription_status": "the server changed a subscription's status (active, error, off) and why",
    "notification_attempt": "one notification attempt: subscription ID, kind, event numbers, attempt, webhook-id, "
    "HTTP status or error class, latency (never header values or IHIs)",
    "events_delivered": "events got a 2xx (final state delivered): subscription ID, first and last number, attempts",
    "events_exhausted": "events failed for good (final state exhausted, kept for $events): numbers, attempts, error",
    "events_cancelled": "events of a deleted, off or ended subscription were cancelled (final state): numbers, reason",
    "events_purged": "final events older than the retention were removed: count, subscriptions",
    "delivery_refused": "the owner may no longer receive a subscription's notifications: nothing sent, status error",
    "delivery_failed_unexpectedly": "a delivery raised an unexpected error; its lease was released for a retry",
    "worker_started": "a delivery worker started: worker name, concurrency",
    "worker_stopped": "a delivery worker stopped",
    "group_created": "a subscriber created a cohort Group: group ID, client, members",
    "group_replaced": "a subscriber replaced a cohort Group's members: group ID, client, members",
    "publication_delivered": "the publisher delivered IHI states to a registry this one publishes to: target, IHIs",
    "publication_failed": "a publication was not accepted: target, IHIs, seconds until the next try, error",
    "publisher_round_failed": "a publisher round failed (a database outage): worker, error; it goes on",
    "worker_listen_failed": "a delivery worker could not LISTEN for wake-ups, or its LISTEN got no notification "
    "(a transaction-mode pooler in between: set IEF_DATABASE_DIRECT_URL); it polls instead",
    "worker_round_failed": "a delivery worker's round failed (database unreachable?); "
    "it retries after the poll interval",
    "discovery_search": "a broker fan-out ended: resource type, IHI hash, gateways asked, matches, issues, duration "
    "(and its parts: locating, waiting for gateways, merging)",
    "gateway_problem": "a gateway gave a broker search nothing, or not everything: service ID, problem, detail",
    "gateway_circuit_opened": "a gateway failed repeatedly, so it is skipped for a while: service ID, cool-down",
    "federation_lookup": "a look-up followed registry records: IHI hash, peers asked, records, unresolved, duration",
    "federation_peer_failed": "a peer registry gave no usable answer (or dropped records): service ID, reason, detail",
    "break_glass": "records were disclosed only by break-glass (purpose ETREAT from a permitted client): client ID, "
    "practitioner, count (reported by `audit break-glass`)",
    "events_withheld": "the privacy decision point withheld events from a subscriber (final state withheld, never "
    "sent): subscription ID, count, first and last number",
    "consent_changed": "a patient's Consents changed (heard on LISTEN): IHI hash; kept broker pages were dropped",
    "consent_listen_failed": "the consent-change listener could not connect; it retries every second and reads "
    "every patient's policy from the primary meanwhile",
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
