"""Waiting at start for the database: what is waited for, for how long, and what is not."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from registry import errors
from registry.config import DatabaseSettings
from registry.db.wait import wait_for_database
from tests.pg import TestCluster
from tests.server import free_port


async def _set_read_only(url: str, name: str, *, on: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
    finally:
        await conn.close()


def _waits(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The wait's own log events: ``capture_logs()`` also takes whatever the session's in-process servers log
    meanwhile (a delivery worker's poll, an audit flush), which is not the wait's to answer for."""
    return [str(entry["event"]) for entry in logs if str(entry["event"]).startswith("database_")]


async def test_a_database_that_refuses_writes_is_waited_for_until_it_takes_them(template: TestCluster) -> None:
    """A database whose sessions are read-only (a standby behind a route not yet moved) is waited for, logged,
    and the wait ends as soon as a session may write."""
    url = await template.new_database()
    name = url.split("/")[3].split("?")[0]
    await _set_read_only(template.url, name, on=True)
    with capture_logs() as logs:
        waiting = asyncio.create_task(wait_for_database(url, DatabaseSettings(startup_wait=120)))
        for _ in range(600):
            if any(entry["event"] == "database_waiting" for entry in logs):
                break
            await asyncio.sleep(0.05)
        assert not waiting.done()
        await _set_read_only(template.url, name, on=False)
        await asyncio.wait_for(waiting, timeout=60)
    waited = [entry for entry in logs if entry["event"] == "database_waiting"]
    reachable = [entry for entry in logs if entry["event"] == "database_reachable"]
    assert "refuses writes" in waited[0]["reason"]
    assert waited[0]["limit_seconds"] == 120
    assert len(reachable) == 1
    assert reachable[0]["attempts"] > 1


async def test_an_unreachable_database_is_given_up_after_the_limit_with_the_reason() -> None:
    """Nothing listening: the wait tries again until the limit, then fails saying what it met."""
    url = f"postgresql://ief@127.0.0.1:{free_port()}/postgres"
    with capture_logs() as logs, pytest.raises(errors.DependencyUnavailable) as failed:
        await wait_for_database(url, DatabaseSettings(startup_wait=1.5))
    assert "could not be reached within 1.5 s" in failed.value.message
    assert "ConnectionRefusedError" in failed.value.message
    assert _waits(logs) == ["database_waiting"]


async def test_no_wait_when_the_limit_is_zero() -> None:
    """``startup_wait = 0`` gives up at the first failure, as before the setting existed."""
    url = f"postgresql://ief@127.0.0.1:{free_port()}/postgres"
    with capture_logs() as logs, pytest.raises(errors.DependencyUnavailable) as failed:
        await wait_for_database(url, DatabaseSettings(startup_wait=0))
    assert failed.value.message.startswith("the database could not be reached: ConnectionRefusedError")
    assert _waits(logs) == []


async def test_a_configuration_error_is_not_waited_for(template: TestCluster) -> None:
    """A database that does not exist will not appear by waiting: the first attempt's error is final."""
    with capture_logs() as logs, pytest.raises(errors.DependencyUnavailable) as failed:
        await wait_for_database(template.url_for("ief_no_such_database"), DatabaseSettings(startup_wait=600))
    assert "InvalidCatalogNameError" in failed.value.message
    assert "does not exist" in failed.value.message
    assert _waits(logs) == []
