"""``AuditMiddleware``: no response to a patient-linked route starts before its audit row is committed.

It sits inside ``RequestContext`` (so the request ID is known) and outside Litestar (so it sees
every response as sent: successes, refusals from guards, validation errors, 413s, 500s). When the
matched route's ``RouteSpec`` names an audit interaction and the request was not already audited in its write
transaction, it writes the row on ``http.response.start`` and only then lets the response go. If
the row cannot be written, the response is replaced by a 503 OperationOutcome.

A method the path does not take (405) matches no handler, so no route declares anything; when
another method of that path is patient-linked (``DELETE /fhir/Basic/{id}`` beside its ``GET``),
the refusal is audited too, as the interaction the method would have been.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.utils import normalize_path

from registry import errors
from registry.audit.context import AuditContext, close, opened
from registry.http import scope_header
from registry.log import get_logger
from registry.outcome import FHIR_JSON, outcome_body, status_of
from registry.route import PRINCIPAL_KEY, route_spec
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
                if message["status"] == 405 and context.interaction is None:
                    await self._audit_refused_method(context, message)
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

    async def _audit_refused_method(self, context: AuditContext, message: Message) -> None:
        """Make a 405 audited when a method the path does take is patient-linked (per its ``Allow`` header),
        with its caller when the request carries a valid token (no guard ran to say who it was)."""
        router: Any = getattr(self.app, "asgi_router", None)
        if router is None:
            return
        headers: Any = message.get("headers") or ()
        allow = next((value for name, value in headers if name.lower() == b"allow"), b"")
        path = normalize_path(str(context.scope.get("path", "")))
        for method in allow.decode("latin-1").split(","):
            try:
                _app, handler, _path, params, _template = router.handle_routing(path=path, method=method.strip())
            except Exception:  # noqa: BLE001, S112 - a method the path does not take after all: try the next
                continue
            if route_spec(handler).audit is not None:
                context.refuse_method(params)
                await self._identify(context)
                return

    async def _identify(self, context: AuditContext) -> None:
        state: Any = getattr(self.app, "state", None)
        authenticator = state.get("authenticator") if state is not None else None
        if authenticator is None:
            return
        client = context.scope.get("client")
        try:
            principal = await authenticator.principal(
                scope_header(context.scope, b"authorization"), client[0] if client else None
            )
        except errors.RegistryError:
            return  # an anonymous or refused caller: the row names its address only
        context.scope.setdefault("state", {})[PRINCIPAL_KEY] = principal


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
