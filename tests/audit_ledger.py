"""The suite-wide audit invariant: every patient-linked request leaves exactly one audit row.

``AuditLedger`` hooks into httpx clients: it gives each request its own ``X-Request-Id`` (unless
the test sets one) and
notes every answered request. ``check`` then compares the notes with the audit table: a request
to a route whose ``RouteSpec`` names an audit interaction must have exactly one row with its request ID, any
other request none. Which routes are patient-linked is read from the running app's own route
table, so a new route is covered the moment it declares itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from litestar import Litestar

from registry.db.pool import Database
from registry.route import route_spec

__all__ = ("AuditLedger", "AuditedRoute", "audited_routes")

_PARAM = re.compile(r"\{[^}]+\}")


@dataclass(frozen=True, slots=True)
class AuditedRoute:
    """A route template and the methods of it that are patient-linked."""

    pattern: re.Pattern[str]
    methods: frozenset[str]


def audited_routes(app: Litestar) -> list[AuditedRoute]:
    """The patient-linked routes of an app, as path patterns with their methods."""
    found: list[AuditedRoute] = []
    for route in app.routes:
        methods = frozenset(
            method
            for handler in getattr(route, "route_handlers", [])
            if route_spec(handler).audit
            for method in handler.http_methods
        )
        if methods:
            parts = _PARAM.split(route.path)
            regex = "[^/]+".join(re.escape(part) for part in parts)
            found.append(AuditedRoute(re.compile(f"^{regex}/?$"), methods))
    return found


@dataclass
class AuditLedger:
    """Notes the requests of the clients it is hooked into, to check them against the audit table."""

    routes: list[AuditedRoute]
    answered: list[tuple[str, str, str, int]] = field(default_factory=list)

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        """httpx ``event_hooks`` that tag and note every request."""
        return {"request": [self._tag], "response": [self._note]}

    async def _tag(self, request: httpx.Request) -> None:
        if "x-request-id" not in request.headers:  # a test that sends its own keeps it
            request.headers["x-request-id"] = uuid.uuid4().hex

    async def _note(self, response: httpx.Response) -> None:
        request = response.request
        self.answered.append((request.method, request.url.path, request.headers["x-request-id"], response.status_code))

    def patient_linked(self, method: str, path: str, status: int = 200) -> bool:
        """Whether a request goes to a patient-linked route (or is a method refused, 405, on the path of one)."""
        return any((method in route.methods or status == 405) and route.pattern.match(path) for route in self.routes)

    async def check(self, database: Database | str) -> None:
        """Fail, naming each offending request, unless every noted request has its expected number of rows.

        ``database``: the server's pool, or the URL of the database to read (the primary, past a pooler).
        """
        if not self.answered:
            return
        sql = "SELECT request_id, count(*) AS n FROM audit_events WHERE request_id = ANY($1::text[]) GROUP BY 1"
        request_ids = [rid for _, _, rid, _ in self.answered]
        if isinstance(database, str):
            conn = await asyncpg.connect(database)
            try:
                rows = await conn.fetch(sql, request_ids)
            finally:
                await conn.close()
        else:
            async with database.writer() as pooled:
                rows = await pooled.fetch(sql, request_ids)
        counts = {row["request_id"]: row["n"] for row in rows}
        wrong = [
            f"{method} {path} (request {rid}): {counts.get(rid, 0)} audit rows, expected {expected}"
            for method, path, rid, status in self.answered
            if counts.get(rid, 0) != (expected := 1 if self.patient_linked(method, path, status) else 0)
        ]
        self.answered.clear()
        assert not wrong, "every patient-linked request leaves exactly one audit row:\n  " + "\n  ".join(wrong)
