"""Running the real ``ief-registry`` command line against a test server's database."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Protocol

from tests.factories import LOOPBACK_NETWORKS

__all__ = ("CliResult", "Instance", "InstanceOf", "run_cli")


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


async def run_cli(server: Instance, *args: str, extra_env: dict[str, str] | None = None) -> CliResult:
    """``python -m registry ARGS`` as the operator of ``server`` (its database and service ID)."""
    env = {
        **os.environ,
        "IEF_DATABASE_URL": server.database_url,
        "IEF_SERVICE_ID": server.service_id,
        "IEF_LOG_LEVEL": "warning",
        "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,  # as the test servers: their peers run on loopback
        **(extra_env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())
