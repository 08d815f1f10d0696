"""The settings of the server process itself: where it listens and how it bounds requests, and its database."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ("DatabaseSettings", "EmbeddedSettings", "HttpSettings")


class HttpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where and how the HTTP server listens."""

    host: Annotated[str, Meta(description="Address the HTTP server binds to.")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535, description="TCP port of the HTTP server.")] = 8080
    workers: Annotated[int, Meta(ge=1, le=64, description="Server processes (each stateless).")] = 1
    max_body_bytes: Annotated[
        int, Meta(ge=1024, description="Largest request body accepted by ordinary endpoints (413 above).")
    ] = 1_048_576
    batch_max_body_bytes: Annotated[
        int, Meta(ge=1024, description="Largest request body accepted by the batch endpoint (413 above).")
    ] = 8_388_608
    max_query_params: Annotated[
        int, Meta(ge=1, description="Most query parameter values one request may carry (400 above).")
    ] = 64
    max_header_bytes: Annotated[
        int,
        Meta(ge=1024, le=1_048_576, description="Largest request line and headers accepted (431 above)."),
    ] = 16_384
    header_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=300,
            description="Seconds a connection has to send a complete request line and headers (408 after).",
        ),
    ] = 10.0
    max_connections_per_address: Annotated[
        int,
        Meta(
            ge=1,
            description="Open connections one client address may hold per server process (429 above; trusted "
            "proxies are not limited).",
        ),
    ] = 256
    keep_alive_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="Seconds an idle connection is kept open for the client's next request; longer than the "
            "clients and proxies in front keep theirs (httpx: 5 s), or a request sent as it closes is lost.",
        ),
    ] = 15.0


class DatabaseSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PostgreSQL: embedded by default, external when a URL is set."""

    url: Annotated[
        str | None,
        Meta(
            description="PostgreSQL URL of an external server, as the server's role (member of `ief_server`); "
            "unset starts the embedded cluster."
        ),
    ] = None
    owner_url: Annotated[
        str | None,
        Meta(
            description="URL of the role that owns the schema, for migrations and the operator's commands; "
            "unset: `database.url` (one role for both)."
        ),
    ] = None
    read_url: Annotated[str | None, Meta(description="Optional URL of a streaming replica for read-only look-ups.")] = (
        None
    )
    direct_url: Annotated[
        str | None,
        Meta(
            description="URL of the primary that bypasses a transaction-mode pooler, for the delivery workers' "
            "LISTEN; unset: `database.url`."
        ),
    ] = None
    pool_min: Annotated[int, Meta(ge=0, description="Connections each server process keeps open.")] = 2
    pool_max: Annotated[int, Meta(ge=1, description="Most connections each server process opens.")] = 16
    statement_cache: Annotated[
        bool,
        Meta(description="asyncpg prepared-statement cache; turn off behind PgBouncer in transaction mode."),
    ] = True
    command_timeout: Annotated[
        float, Meta(gt=0, description="Seconds one database statement may run before it is cancelled.")
    ] = 30.0
    auto_migrate: Annotated[
        bool, Meta(description="Apply pending migrations when `serve` starts (else refuse to start).")
    ] = True
    startup_wait: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds `serve` and `worker` wait at start for a database that cannot be reached or "
            "refuses writes (a failover, a server starting); 0 gives up at once.",
        ),
    ] = 60.0


class EmbeddedSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The private PostgreSQL cluster started when no database URL is set."""

    user: Annotated[str, Meta(description="System user that runs PostgreSQL when the server itself runs as root.")] = (
        "postgres"
    )
    bin_dir: Annotated[
        str | None,
        Meta(description="Folder holding initdb and pg_ctl; unset searches PATH and the usual places."),
    ] = None
