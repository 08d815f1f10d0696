"""Idempotency keys (IETF httpapi ``Idempotency-Key``): retries made harmless without swallowing registrations.

A write that carries a key is answered once: its first answer (status and body) is kept for 24
hours, keyed by the client and the key, in the write's own transaction (so an answer is kept
exactly when its write committed). The same key from the same client answers the first answer
again and writes nothing; with another request (its fingerprint differs) it is refused (422); while
the first is still in flight, a duplicate is told so (409).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry import errors
from registry.db.errors import translate_db_errors

if TYPE_CHECKING:
    from registry.db.pool import Connection
    from registry.db.queries import Queries

__all__ = (
    "Answer",
    "IdempotencyRepository",
    "Keyed",
    "fingerprint",
    "in_progress",
    "is_item_key",
    "parse_key",
    "reused",
)

_KEY = re.compile(r'"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,255})"|([\x21\x23-\x7e]{1,255})')
_ITEM_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")
_PURGE_EVERY = 60.0
_PURGE_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    """A write's answer as it was first given: the HTTP status and the body's bytes."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Keyed:
    """A write that carries an idempotency key: the key and the fingerprint of what it asks for."""

    key: str
    fingerprint: bytes


def parse_key(header: str) -> str:
    """The key of an ``Idempotency-Key`` header: a structured-field string (``"…"``) or, leniently, a bare token.

    Raises:
        MalformedRequest: empty, longer than 255 characters, or not printable ASCII.
    """
    match = _KEY.fullmatch(header.strip(" \t"))  # optional whitespace around a field value (RFC 9110)
    if not match:
        message = "Idempotency-Key is a quoted string of 1 to 255 printable ASCII characters"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, "Idempotency-Key")])
    return match.group(1) or match.group(2)


def is_item_key(key: str) -> bool:
    """Whether a batch item's ``idempotencyKey`` is a key: 1 to 255 printable ASCII characters, spaces only
    between others."""
    return _ITEM_KEY.fullmatch(key) is not None


def fingerprint(*parts: object) -> bytes:
    """The fingerprint of a request: what it asks for, normalised (the same write gives the same bytes)."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).digest()


def reused(key: str) -> errors.InvalidInput:
    """The refusal of a key sent again with another request."""
    return errors.InvalidInput(
        f"Idempotency-Key {key!r} was used by this client within 24 hours for another request",
        code=errors.ErrorCode.IDEMPOTENCY_KEY_REUSED,
    )


def in_progress(key: str) -> errors.Conflict:
    """The refusal of a duplicate while the first request with its key is still in flight."""
    return errors.Conflict(
        f"a request with Idempotency-Key {key!r} is still in progress; repeat this one when it has been answered",
        code=errors.ErrorCode.IDEMPOTENCY_IN_PROGRESS,
    )


class IdempotencyRepository:
    """The only caller of ``sql/queries/idempotency.sql``."""

    __slots__ = ("_next_purge", "_q")

    def __init__(self, queries: Queries) -> None:
        self._q = queries
        self._next_purge = 0.0

    async def try_lock(self, conn: Connection, client_id: str, key: str) -> bool:
        """Lock ``(client, key)`` for the caller's transaction; False when another request holds it."""
        with translate_db_errors():
            return bool(await conn.fetchval(self._q["idempotency_try_lock"], client_id, key))

    async def claim(self, conn: Connection, client_id: str, keyed: list[Keyed]) -> set[str]:
        """Claim keys for the caller's transaction; return those claimed (the others were accepted before)."""
        with translate_db_errors():
            rows = await conn.fetch(
                self._q["idempotency_claim"], client_id, [k.key for k in keyed], [k.fingerprint for k in keyed]
            )
        return {row["key"] for row in rows}

    async def answers(self, conn: Connection, client_id: str, keys: list[str]) -> dict[str, tuple[bytes, Answer]]:
        """The first answers kept for ``keys``, with the fingerprint of the request each answered."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["idempotency_answers"], client_id, keys)
        return {row["key"]: (bytes(row["fingerprint"]), Answer(row["status"], bytes(row["body"]))) for row in rows}

    async def keep(self, conn: Connection, client_id: str, answers: dict[str, Answer]) -> None:
        """Keep the answers of the keys the caller's transaction claimed."""
        if not answers:
            return
        keys = list(answers)
        with translate_db_errors():
            await conn.execute(
                self._q["idempotency_answer"], client_id, keys, [answers[k].status for k in keys],
                [answers[k].body for k in keys],
            )  # fmt: skip

    async def purge_now_and_then(self, conn: Connection) -> None:
        """Forget answers older than 24 hours, at most once a minute per process."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY
        with translate_db_errors():
            await conn.execute(self._q["idempotency_purge"], _PURGE_BATCH)
