"""Database errors translated at the repository edge into the project's error tree."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from registry import errors

__all__ = ("AUDIT_MONTH_CLOSED", "UNKNOWN_SERVICE", "translate_db_errors")

UNKNOWN_SERVICE = "IE001"
"""SQLSTATE raised by ``put_record()`` when a record names an unknown or disabled service."""
AUDIT_MONTH_CLOSED = "IE002"
"""SQLSTATE raised for an audit row whose month is closed (its chain is sealed)."""
_AUDIT_TABLES = frozenset({"audit_events", "audit_chain"})

_UNAVAILABLE_SERVER = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,  # the database is gone
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A write that reaches a read-only server: a standby behind a route not yet switched, or a
    # primary being demoted during a failover. Another try reaches the new primary.
    asyncpg.ReadOnlySQLTransactionError,
)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection the server ended mid-operation (a failover, pg_terminate_backend) can surface as
    # asyncpg's InternalClientError ("cannot switch to state …", MagicStack/asyncpg#784, #1069); its
    # TargetServerAttributeNotMatched subclass is target_session_attrs=read-write finding no primary.
    asyncpg.InternalClientError,
)


_DATABASE = errors.ErrorCode.DATABASE_UNAVAILABLE


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn asyncpg and connection errors into ``RegistryError``s; anything else propagates."""
    try:
        yield
    except _UNAVAILABLE_SERVER as exc:
        raise errors.DependencyUnavailable("the database cannot be reached", code=_DATABASE) from exc
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == UNKNOWN_SERVICE:
            raise errors.UnknownService(str(exc.args[0] if exc.args else exc), issues=None) from exc
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            raise errors.UnknownService("the record names a service that is not in the directory") from exc
        if isinstance(exc, asyncpg.DeadlockDetectedError):
            # Concurrent batches that lock the same subscriptions in another order (ADR 0010): PostgreSQL
            # aborted this one; repeating it is safe (writes are idempotent).
            raise errors.Conflict("the write met a concurrent one and was rolled back; repeat it") from exc
        if isinstance(exc, asyncpg.QueryCanceledError):
            raise errors.DependencyUnavailable("the database did not answer in time", code=_DATABASE) from exc
        if exc.sqlstate == AUDIT_MONTH_CLOSED or (
            isinstance(exc, asyncpg.CheckViolationError) and getattr(exc, "table_name", None) in _AUDIT_TABLES
        ):
            # The audit row's month is closed, or has no partition (made ahead by every process): the
            # request cannot be audited, so it is not served; the next try is timed anew.
            message = "the audit trail cannot take this request's row now"
            raise errors.DependencyUnavailable(message, code=errors.ErrorCode.AUDIT_UNAVAILABLE) from exc
        raise
    except _UNAVAILABLE as exc:
        raise errors.DependencyUnavailable("the database cannot be reached", code=_DATABASE) from exc
