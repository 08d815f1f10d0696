"""``GET /audit/checkpoints`` (admin): the signed checkpoint of every sealed month and the public audit keys.

An operator copies this document to another system from time to time: its newest checkpoint is
then an anchor (``ief-registry audit verify --checkpoint FILE``) that no one who can only change the
database can move, and its keys verify exports offline (``audit verify --export DIR --key FILE``).
The audit feature contributes it (``registry.fhir.plugin.AuditEventPlugin.routes``).
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from registry.audit.checkpoints import PublishedCheckpoints
from registry.auth.scopes import ADMIN
from registry.route import RouteSpec

__all__ = ("AuditCheckpointController",)


class AuditCheckpointController(Controller):
    """The audit trail's checkpoints (admin only; no patient data, so not audited)."""

    path = "/audit/checkpoints"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="auditCheckpoints", opt=RouteSpec(scopes=(ADMIN,)).opt)
    async def checkpoints(self, audit_checkpoints: NamedDependency[PublishedCheckpoints]) -> Response[bytes]:
        """Every checkpoint, oldest first (month, chain entries, hashes, compact JWS), and the audit keys (JWKS)."""
        document = await audit_checkpoints.document()
        return Response(msgspec.json.encode(document), media_type="application/json")
