"""The ASGI factory of ``serve --workers N``: each worker builds its app from the settings ``serve`` hands over.

``serve`` resolves the whole ``Settings`` once (the configuration file, the environment, the
command line, the database URL, the service ID, the log-hash key) and hands it to every worker as
one serialized value in ``IEF_SERVE_SETTINGS``; a worker reads nothing else, so it runs exactly as
``serve`` was configured (its log level, data directory, trusted issuers…).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import msgspec

from registry.config import Settings
from registry.log import configure_logging
from registry.server import heap
from registry.server.app import build_asgi

if TYPE_CHECKING:
    from litestar.types import ASGIApp

__all__ = ("SETTINGS_VARIABLE", "application", "create", "hand_over")

SETTINGS_VARIABLE = "IEF_SERVE_SETTINGS"
"""The environment variable that carries the settings from ``serve`` to its worker processes."""


def application(settings: Settings) -> ASGIApp:
    """The ASGI application of settings whose database URL, service ID and log-hash key ``serve`` filled in.

    Raises:
        ValueError: one of them is missing.
    """
    url, service_id, hash_key = settings.database.url, settings.service_id, settings.log.hash_key
    if url is None or service_id is None or hash_key is None:
        raise ValueError("serve fills in the database URL, the service ID and the log-hash key")
    app = build_asgi(settings, database_url=url, service_id=service_id, hash_key=hash_key.encode())
    heap.settle()  # a server process runs one app: what it was built from lives as long as the process
    return app


def hand_over(settings: Settings) -> None:
    """Make ``settings`` (filled in, as ``application`` takes them) the settings of every worker started from
    this process from now on."""
    os.environ[SETTINGS_VARIABLE] = msgspec.json.encode(settings).decode()


def create() -> ASGIApp:
    """Build one worker's app from the settings ``serve`` handed over."""
    settings = msgspec.json.decode(os.environ[SETTINGS_VARIABLE], type=Settings)
    configure_logging(settings.log.level, settings.log.format)
    return application(settings)
