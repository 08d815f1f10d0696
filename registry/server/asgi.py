"""ASGI factory for multi-worker serving: each worker builds its app from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.config import load_settings
from registry.instance import instance_service_id, log_hash_key
from registry.log import configure_logging
from registry.server.app import build_asgi

if TYPE_CHECKING:
    from litestar.types import ASGIApp

__all__ = ("create",)


def create() -> ASGIApp:
    """Build one worker's app; ``serve`` has set ``IEF_DATABASE_URL`` and ``IEF_SERVICE_ID`` for it."""
    settings = load_settings()
    configure_logging(settings.log.level, settings.log.format)
    assert settings.database.url, "serve sets IEF_DATABASE_URL before starting workers"
    return build_asgi(
        settings,
        database_url=settings.database.url,
        service_id=instance_service_id(settings.data_dir, settings.service_id),
        hash_key=log_hash_key(settings.data_dir, settings.log.hash_key),
    )
