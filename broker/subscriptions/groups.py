"""Cohorts: FHIR ``Group`` of patients (IHIs) that a subscription follows with ``patient-group=Group/{id}``.

A Group belongs to the client that created it (others get 404; ``admin`` sees every one). Its
members are kept in ``group_members``, which the registration trigger joins by IHI, so a changed
Group decides what is delivered from the next event on. A Group is never deleted (a subscription
may name it); it can be emptied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry import errors
from registry.audit.context import note_detail
from registry.db.errors import translate_db_errors
from registry.log import get_logger

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from registry.auth.scopes import Principal
    from registry.config import SubscriptionSettings
    from registry.db.pool import Connection, Database
    from registry.db.queries import Queries

__all__ = ("GroupRepository", "GroupService", "StoredGroup")

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A cohort as stored, with its members (in IHI order) when they were read."""

    group_id: uuid.UUID
    client_id: str
    name: str | None
    member_count: int
    version: int
    updated_at: datetime
    members: tuple[str, ...] = ()


class GroupRepository:
    """The only caller of ``sql/queries/groups.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    @staticmethod
    def _group(row: asyncpg.Record | None, members: tuple[str, ...] = ()) -> StoredGroup:
        assert row is not None
        return StoredGroup(
            row["group_id"], row["client_id"], row["name"], row["member_count"], row["version"], row["updated_at"],
            members,
        )  # fmt: skip

    async def create(self, conn: Connection, client_id: str, name: str | None, ihis: list[str]) -> StoredGroup:
        """A new cohort with its members."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["create_group"], client_id, name, ihis)
        return self._group(row, tuple(ihis))

    async def get(self, conn: Connection, group_id: uuid.UUID, *, lock: bool = False) -> StoredGroup | None:
        """One cohort (locked with ``lock``) without its members, or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["lock_group" if lock else "get_group"], group_id)
        return self._group(row) if row else None

    async def replace(self, conn: Connection, group_id: uuid.UUID, name: str | None, ihis: list[str]) -> StoredGroup:
        """Give a cohort a new name and members (in the caller's transaction)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["replace_group"], group_id, name, ihis)
            await conn.execute(self._q["insert_group_members"], group_id, ihis)
        return self._group(row, tuple(ihis))

    async def members(self, conn: Connection, group_id: uuid.UUID) -> tuple[str, ...]:
        """A cohort's members, in IHI order."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["group_members"], group_id)
        return tuple(row["ihi"] for row in rows)

    async def owner(self, conn: Connection, group_id: uuid.UUID) -> str | None:
        """The client that owns a cohort, or None when there is none."""
        with translate_db_errors():
            owner = await conn.fetchval(self._q["group_owner"], group_id)
        return str(owner) if owner is not None else None


class GroupService:
    """Create, replace and read cohorts."""

    def __init__(self, db: Database, repository: GroupRepository, settings: SubscriptionSettings) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings

    def _check(self, ihis: list[str]) -> list[str]:
        members = sorted(set(ihis))
        if len(members) > self._settings.group_max_members:
            raise errors.PayloadTooLarge(
                f"a Group holds at most {self._settings.group_max_members} members; this one has {len(members)}"
            )
        return members

    async def create(self, name: str | None, ihis: list[str], *, actor: Principal) -> StoredGroup:
        """A new cohort of ``actor``.

        Raises:
            PayloadTooLarge: more members than ``subscriptions.group_max_members``.
        """
        members = self._check(ihis)
        async with self._db.writer() as conn, conn.transaction():
            stored = await self._repo.create(conn, actor.client_id, name, members)
        note_detail(f"Group/{stored.group_id} created with {len(members)} members")
        _log.info("group_created", group_id=str(stored.group_id), client_id=actor.client_id, members=len(members))
        return stored

    async def replace(self, group_id: str, name: str | None, ihis: list[str], *, actor: Principal) -> StoredGroup:
        """A cohort's new members (and name): the next event is matched against them.

        Raises:
            NotFound: no such cohort of ``actor``.
            PayloadTooLarge: more members than ``subscriptions.group_max_members``.
        """
        members = self._check(ihis)
        key = _key(group_id)
        async with self._db.writer() as conn, conn.transaction():
            current = await self._repo.get(conn, key, lock=True)
            _visible(current, actor)
            stored = await self._repo.replace(conn, key, name, members)
        note_detail(f"Group/{group_id} replaced with {len(members)} members")
        _log.info("group_replaced", group_id=group_id, client_id=actor.client_id, members=len(members))
        return stored

    async def read(self, group_id: str, *, actor: Principal) -> StoredGroup:
        """One cohort with its members.

        Raises:
            NotFound: no such cohort, or another client's (unless ``actor`` holds ``admin``).
        """
        key = _key(group_id)
        async with self._db.reader() as conn:
            current = _visible(await self._repo.get(conn, key), actor)
            members = await self._repo.members(conn, key)
        note_detail(f"Group/{group_id} read with {len(members)} members")
        return StoredGroup(
            current.group_id, current.client_id, current.name, current.member_count, current.version,
            current.updated_at, members,
        )  # fmt: skip


def _key(group_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(group_id)
    except ValueError:
        raise errors.NotFound("no such Group") from None


def _visible(group: StoredGroup | None, actor: Principal) -> StoredGroup:
    if group is None or (group.client_id != actor.client_id and not actor.is_admin):
        raise errors.NotFound("no such Group")
    return group
