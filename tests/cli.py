"""Running the real ``ief-registry`` command line against a test server's database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import sys
from dataclasses import dataclass
from typing import Protocol

from tests.factories import LOOPBACK_NETWORKS

__all__ = ("CliResult", "Instance", "InstanceOf", "on_a_terminal", "run_cli")


class Instance(Protocol):
    """Whose operator runs the command: a database and a service ID (a ``RunningServer`` has both)."""

    @property
    def database_url(self) -> str: ...

    @property
    def service_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class InstanceOf:
    """An instance known by its database and service ID alone (no server running)."""

    database_url: str
    service_id: str


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one command printed and how it ended."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The last line of standard output."""
        return self.out.strip().splitlines()[-1]


def _env(server: Instance, extra_env: dict[str, str] | None) -> dict[str, str]:
    return {
        **os.environ,
        "IEF_DATABASE_URL": server.database_url,
        "IEF_SERVICE_ID": server.service_id,
        "IEF_LOG_LEVEL": "warning",
        "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,  # as the test servers: their peers run on loopback
        **(extra_env or {}),
    }


async def run_cli(server: Instance, *args: str, extra_env: dict[str, str] | None = None) -> CliResult:
    """``python -m registry ARGS`` as the operator of ``server`` (its database and service ID)."""
    env = _env(server, extra_env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


async def on_a_terminal(server: Instance, *args: str, extra_env: dict[str, str] | None = None) -> str:
    """Run ``python -m registry ARGS`` as ``run_cli`` does, with its stderr on a pseudo-terminal; what was drawn
    there (the command must succeed)."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=_env(server, extra_env), stdout=asyncio.subprocess.PIPE,
        stderr=follower,
    )  # fmt: skip
    os.close(follower)
    await process.communicate()
    drawn = b""
    with contextlib.suppress(OSError):  # the terminal is closed once the process has ended and all is read
        while chunk := os.read(leader, 65536):
            drawn += chunk
    os.close(leader)
    assert process.returncode == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")
