"""``AuditMiddleware``: no response to a patient-linked route starts before its audit row is committed.

It sits inside ``RequestContext`` (so the request ID is known) and outside Litestar (so it sees
every response as sent: successes, refusals from guards, validation errors, 413s, 500s). When the
matched route's ``RouteSpec`` names an audit interaction and the request was not already audited in its write
transaction, it writes the row on ``http.response.start`` and only then lets the response go. If
the row cannot be written, the response is replaced by a 503 OperationOutcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from registry import errors
from registry.audit.context import close, opened
from registry.log import get_logger
from registry.outcome import FHIR_JSON, outcome_body, status_of
from schemas.errors import ErrorCode

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from registry.audit.trail import AuditTrail
    from schemas.fhir.canonical import Canonicals

__all__ = ("AuditMiddleware",)

_log = get_logger(__name__)


class AuditMiddleware:
    """ASGI middleware: the universal audit of patient-linked routes."""

    def __init__(self, app: ASGIApp, trail: AuditTrail, canon: Canonicals) -> None:
        self.app = app
        self.trail = trail
        self._unavailable = outcome_body(
            canon,
            ErrorCode.AUDIT_UNAVAILABLE,
            [("the audit trail cannot be written; the request was not answered", None, None)],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        context, token = opened(scope)
        started = replaced = False

        async def send_audited(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if context.pending:
                    try:
                        await self.trail.record(context, message["status"])
                    except Exception:  # noqa: BLE001 - whatever the cause, the response must not go out unaudited
                        replaced = True
                        await _send_unavailable(send, self._unavailable)
                        return
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except Exception:
            if not started and context.pending:
                try:
                    await self.trail.record(context, 500)
                except Exception:  # noqa: BLE001 - the original error is the one to raise
                    _log.error("audit_write_failed", rows=1, error="the row of a failed request could not be written")
            raise
        finally:
            close(token)


async def _send_unavailable(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status_of(ErrorCode.AUDIT_UNAVAILABLE),
            "headers": [
                (b"content-type", FHIR_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(errors.DependencyUnavailable.retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
