"""Storage of Consent records: the only caller of ``sql/queries/consents.sql``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from registry.db.errors import translate_db_errors
from registry.db.paging import fetch_page
from schemas.privacy import policy_decoder, policy_encoder

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.privacy import ConsentRules, PatientPolicy

__all__ = ("ConsentRepository", "StoredConsent")

_resource_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class StoredConsent:
    """One Consent as stored: its id, patient, status, the resource as written, version and time."""

    consent_id: UUID
    ihi: str
    status: str
    resource: dict[str, Any]
    version: int
    last_updated: datetime


def _stored(row: asyncpg.Record) -> StoredConsent:
    return StoredConsent(
        consent_id=row["consent_id"],
        ihi=row["ihi"],
        status=row["status"],
        resource=_resource_decoder.decode(row["resource"]),
        version=row["version"],
        last_updated=row["last_updated"],
    )


class ConsentRepository:
    """Consents in, stored Consents out; the database keeps history and the patients' compact policies."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def insert(
        self, conn: Connection, *, consent_id: UUID, ihi: str, status: str, resource: dict[str, Any],
        rules: ConsentRules, actor: str,
    ) -> StoredConsent:  # fmt: skip
        """Store a new Consent."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["insert_consent"], consent_id, ihi, status, msgspec.json.encode(resource).decode(),
                policy_encoder.encode(rules).decode(), actor,
            )  # fmt: skip
        assert row is not None
        return _stored(row)

    async def update(
        self, conn: Connection, consent_id: UUID, *, status: str, resource: dict[str, Any], rules: ConsentRules,
        actor: str, expected_version: int | None,
    ) -> StoredConsent | None:  # fmt: skip
        """Store a new version of a Consent; None when it is not at ``expected_version``."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["update_consent"], consent_id, status, msgspec.json.encode(resource).decode(),
                policy_encoder.encode(rules).decode(), actor, expected_version,
            )  # fmt: skip
        return _stored(row) if row else None

    async def lock(self, conn: Connection, consent_id: UUID) -> StoredConsent | None:
        """One Consent, locked until the transaction ends."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["lock_consent"], consent_id)
        return _stored(row) if row else None

    async def get(self, conn: Connection, consent_id: UUID) -> StoredConsent | None:
        """One Consent by id."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_consent"], consent_id)
        return _stored(row) if row else None

    async def version(self, conn: Connection, consent_id: UUID, version: int) -> StoredConsent | None:
        """One version of a Consent (its history row), or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_consent_version"], consent_id, version)
        return _stored(row) if row else None

    async def versions(
        self, conn: Connection, consent_id: UUID, *, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[StoredConsent], int]:
        """A page of one Consent's versions, newest first, and the count of every match."""
        rows, total = await fetch_page(
            conn, self._q["get_consent_versions"], consent_id, since, limit=limit, offset=offset
        )
        return [_stored(row) for row in rows], total

    async def search(
        self, conn: Connection, *, ihis: list[str] | None, statuses: list[str] | None, limit: int, offset: int
    ) -> tuple[list[StoredConsent], int]:
        """A page of Consents of the patients and statuses given (None: any), and the total."""
        rows, total = await fetch_page(conn, self._q["search_consents"], ihis, statuses, limit=limit, offset=offset)
        return [_stored(row) for row in rows], total

    async def policy(self, conn: Connection, ihi: str) -> PatientPolicy:
        """A patient's compact privacy policy (empty: no active Consent)."""
        with translate_db_errors():
            raw = await conn.fetchval(self._q["patient_policy"], ihi)
        return policy_decoder.decode(raw) if raw else ()
