"""This instance's identity: its service ID and its log-hash key (kept in the data directory), and its release."""

from __future__ import annotations

import os
import secrets
import uuid
from importlib import metadata
from pathlib import Path

from schemas.types import parse_service_id

__all__ = ("instance_service_id", "log_hash_key", "release")


def _read_or_create(path: Path, make: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(make)
    return make


def instance_service_id(data_dir: str | Path, configured: str | None) -> str:
    """The configured service ID, else one generated once and kept in ``<data_dir>/service-id``."""
    if configured:
        return parse_service_id(configured)
    value = _read_or_create(Path(data_dir) / "service-id", str(uuid.uuid4()).encode())
    return parse_service_id(value.decode())


def log_hash_key(data_dir: str | Path, configured: str | None) -> bytes:
    """The key of the IHI hash in logs: configured, else generated once in ``<data_dir>/log-hash.key``."""
    if configured:
        return configured.encode()
    return _read_or_create(Path(data_dir) / "log-hash.key", secrets.token_hex(32).encode())


def release() -> str:
    """This release's version, as installed (``ief-registry --version``, the index at ``/``, the OpenAPI document)."""
    try:
        return metadata.version("ief-registry")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
