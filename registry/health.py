"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from registry import errors
from registry.db.errors import translate_db_errors
from registry.db.migrate import schema_state
from registry.db.pool import Database, read_only
from registry.route import RouteSpec

__all__ = ("HealthController",)


class HealthController(Controller):
    """``/health/live`` (the process answers) and ``/health/ready`` (it can serve)."""

    path = "/health"
    tags = ["operations"]  # noqa: RUF012 - Litestar reads this class attribute as is
    opt = RouteSpec(public=True).opt  # probes carry no token

    @get("/live", operation_id="healthLive")
    async def live(self) -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "ok"}

    @get("/ready", operation_id="healthReady")
    async def ready(self, db: NamedDependency[Database]) -> Response[dict[str, object]]:
        """The database answers, takes writes, and its schema is at this release's head (503 otherwise)."""
        async with db.writer() as conn:
            with translate_db_errors():
                schema = await schema_state(conn)
                refuses_writes = await read_only(conn)
        if refuses_writes:
            raise errors.DependencyUnavailable(
                "the database is read-only (a standby, or a primary being demoted)",
                code=errors.ErrorCode.DATABASE_UNAVAILABLE,
            )
        if not schema.at_head:
            raise errors.DependencyUnavailable(
                f"database schema is not at head: pending {[m.version for m in schema.pending]}, "
                f"unknown {schema.unknown}"
            )
        return Response({"status": "ok", "schema": max(schema.applied, default=0)})
