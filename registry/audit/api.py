"""``GET /audit/checkpoints`` (admin): the signed checkpoint of every sealed month and the public audit keys.

An operator copies this document to another system from time to time: its newest checkpoint is
then an anchor (``ief-registry audit verify --checkpoint FILE``) that no one who can only change the
database can move, and its keys verify exports offline (``audit verify --export DIR --key FILE``).
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State

from registry.auth.scopes import ADMIN

__all__ = ("AuditCheckpointController",)


class AuditCheckpointController(Controller):
    """The audit trail's checkpoints (admin only; no patient data, so not audited)."""

    path = "/audit/checkpoints"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get("/", operation_id="auditCheckpoints", opt={"scopes": (ADMIN,)})
    async def checkpoints(self, state: State) -> Response[bytes]:
        """Every checkpoint, oldest first (month, chain entries, hashes, compact JWS), and the audit keys (JWKS)."""
        document = await state.audit_checkpoints.document()
        return Response(msgspec.json.encode(document), media_type="application/json")
