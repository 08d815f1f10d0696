"""Sealed checkpoints: each closed month's stretch of the hash chain, signed with the instance's audit key.

A checkpoint says: the rows of month M are chain entries ``firstSeq`` to ``lastSeq`` (``rows`` of
them); the chain before them ended in ``prevHash``, and the last of them is ``headHash``. It is a
compact JWS (RS256, ``kid`` the key's RFC 7638 thumbprint, ``typ`` ``ief-audit-checkpoint+json``)
whose payload is the ``Checkpoint`` as JSON. It is stored in ``audit_checkpoints``, published at
``GET /audit/checkpoints`` with the public audit keys, and written into every export, so anyone
who holds a copy of the instance's public audit key can check a copy of the trail without the
database, and a copy kept elsewhere anchors the chain against being cut back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from registry.audit.repository import from_beginning

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository, StoredCheckpoint
    from registry.db.pool import Connection, Database

__all__ = (
    "TYPE",
    "Checkpoint",
    "CheckpointInvalid",
    "CheckpointSigner",
    "PublishedCheckpoints",
    "checkpoints_document",
    "month_label",
    "open_checkpoint",
    "parse_month",
    "public_keys",
    "read_checkpoint_file",
    "read_trusted_keys",
)

TYPE = "ief-audit-checkpoint+json"
_ALG = "RS256"


class CheckpointInvalid(ValueError):
    """A checkpoint that does not verify: bad signature, unknown key, or not a checkpoint at all."""


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a checkpoint asserts (its JWS payload).

    Attributes:
        issuer: the service ID of the instance that sealed it.
        month: the month, ``YYYY-MM``; the period that holds the trail from before months is named
            by its last month and has no ``starts``.
        starts: when the month's rows begin (None: from the beginning).
        ends: when they end (exclusive).
        first_seq: the chain entry of the month's first row (``last_seq + 1`` of the month before).
        last_seq: the chain entry of its last row (``first_seq - 1`` for a month without rows).
        rows: how many rows the month holds.
        prev_hash: the hash the chain had before the month (hex; 64 zeros at the beginning).
        head_hash: the hash of its last entry (hex; ``prev_hash`` for a month without rows).
        sealed: when the checkpoint was made.
    """

    issuer: str
    month: str
    starts: datetime | None
    ends: datetime
    first_seq: int
    last_seq: int
    rows: int
    prev_hash: str
    head_hash: str
    sealed: datetime


def month_label(month: date) -> str:
    """``YYYY-MM`` of a month's first day."""
    return f"{month.year:04d}-{month.month:02d}"


def parse_month(value: str) -> date:
    """The first day of a month given as ``YYYY-MM``.

    Raises:
        ValueError: not a month in that form.
    """
    try:
        parsed = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{value!r} is not a month (YYYY-MM)") from None
    return parsed.date()


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """Signs checkpoints with the active audit key of this instance (read through ``key`` at each use: keys rotate)."""

    key: Callable[[], RSAKey]
    issuer: str

    def sign(self, checkpoint: Checkpoint) -> str:
        """The compact JWS of a checkpoint."""
        key = self.key()
        header = {"alg": _ALG, "kid": key.thumbprint(), "typ": TYPE}
        return jws.serialize_compact(header, msgspec.json.encode(checkpoint), key, algorithms=[_ALG])

    def checkpoint(
        self, month: date, starts: datetime, ends: datetime, *, first_seq: int, last_seq: int, prev: bytes, head: bytes
    ) -> Checkpoint:
        """The checkpoint of the month ``[starts, ends)`` sealed now."""
        return Checkpoint(
            issuer=self.issuer, month=month_label(month),
            starts=None if from_beginning(starts) else starts, ends=ends, first_seq=first_seq,
            last_seq=last_seq, rows=last_seq - first_seq + 1, prev_hash=prev.hex(), head_hash=head.hex(),
            sealed=datetime.now(UTC),
        )  # fmt: skip


def public_keys(pems: Iterable[str]) -> list[RSAKey]:
    """Public halves of RSA keys (PEM), each with its thumbprint as ``kid``."""
    found: list[RSAKey] = []
    for pem in pems:
        public = RSAKey.import_key(RSAKey.import_key(pem).as_dict(private=False))
        found.append(RSAKey.import_key(public.as_dict(), parameters={"kid": public.thumbprint(), "alg": _ALG}))
    return found


def open_checkpoint(token: str, keys: Iterable[RSAKey]) -> Checkpoint:
    """The checkpoint a JWS asserts, once its signature verifies with one of ``keys`` (matched by thumbprint).

    Raises:
        CheckpointInvalid: not a checkpoint JWS, signed by none of ``keys``, or a bad signature.
    """
    by_kid = {key.thumbprint(): key for key in keys}
    try:
        header = jws.extract_compact(token.strip().encode()).headers()
    except (JoseError, ValueError) as exc:
        raise CheckpointInvalid(f"not a compact JWS: {exc}") from None
    if header.get("typ") != TYPE or header.get("alg") != _ALG:
        raise CheckpointInvalid(f"not an audit checkpoint (typ {header.get('typ')!r}, alg {header.get('alg')!r})")
    key = by_kid.get(str(header.get("kid")))
    if key is None:
        raise CheckpointInvalid(f"signed with key {header.get('kid')!r}, which is not a trusted audit key")
    try:
        verified = jws.deserialize_compact(token.strip(), key, algorithms=[_ALG])
        return msgspec.json.decode(verified.payload, type=Checkpoint)
    except (JoseError, ValueError, msgspec.DecodeError) as exc:
        raise CheckpointInvalid(f"the checkpoint does not verify: {exc}") from None


def read_trusted_keys(path: Path) -> list[RSAKey]:
    """Public audit keys from a file: a JWKS, one JWK, or the document of ``GET /audit/checkpoints``.

    Raises:
        CheckpointInvalid: the file holds no usable key.
    """
    try:
        document = msgspec.json.decode(path.read_bytes())
        if isinstance(document, dict) and isinstance(document.get("jwks"), dict):
            document = document["jwks"]
        entries = document.get("keys", [document]) if isinstance(document, dict) else []
        keys = [RSAKey.import_key({k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")})
                for entry in entries]  # fmt: skip
    except (OSError, msgspec.DecodeError, JoseError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointInvalid(f"cannot read audit keys from {path}: {exc}") from None
    if not keys:
        raise CheckpointInvalid(f"{path} holds no key")
    return keys


def read_checkpoint_file(path: Path) -> str:
    """The JWS in a file: a compact JWS, or the newest checkpoint of a ``GET /audit/checkpoints`` document.

    Raises:
        CheckpointInvalid: the file holds no checkpoint.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
        if not text.startswith("{"):
            return text
        document = msgspec.json.decode(text)
        if "jws" in document:
            return str(document["jws"])
        return str(document["checkpoints"][-1]["jws"])
    except (OSError, UnicodeDecodeError, msgspec.DecodeError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointInvalid(f"cannot read a checkpoint from {path}: {exc}") from None


def _entry(month: date, stored: StoredCheckpoint) -> dict[str, Any]:
    return {
        "month": month_label(month), "firstSeq": stored.first_seq, "lastSeq": stored.last_seq, "rows": stored.rows,
        "prevHash": stored.prev_hash.hex(), "headHash": stored.head_hash.hex(),
        "sealed": stored.sealed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "jws": stored.jws,
    }  # fmt: skip


class PublishedCheckpoints:
    """What ``GET /audit/checkpoints`` shows: every checkpoint, oldest first, and the public audit keys."""

    def __init__(self, db: Database, repository: AuditRepository) -> None:
        self._db = db
        self._repo = repository

    async def document(self) -> dict[str, Any]:
        """``{"checkpoints": [...], "jwks": {"keys": [...]}}`` (from the primary: a replica may lag)."""
        async with self._db.writer() as conn:
            return await checkpoints_document(conn, self._repo)


async def checkpoints_document(conn: Connection, repository: AuditRepository) -> dict[str, Any]:
    """Every stored checkpoint, oldest first, and the public halves of every audit key."""
    months = await repository.months(conn)
    keys = public_keys(pem for _, pem in await repository.signing_keys(conn))
    return {
        "checkpoints": [_entry(m.month, m.checkpoint) for m in months if m.checkpoint is not None],
        "jwks": {"keys": [key.as_dict(private=False) for key in keys]},
    }
