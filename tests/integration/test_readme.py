"""The README's walkthrough works as printed (only the server address and instance point at the test server)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import msgspec

from registry.config import Settings
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[2]
_MARK = "@@walkthrough-step-done@@"


def walkthrough_commands() -> list[str]:
    """The shell commands of the README walkthrough block, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough", 1)[1].split("<!-- end walkthrough -->", 1)[0]
    body = block.split("```sh", 1)[1].rsplit("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


async def test_readme_walkthrough_as_printed(template: TestCluster) -> None:
    """Each README command runs in one shell (so $TOKEN carries over) and answers what the README says."""
    commands = walkthrough_commands()
    assert len(commands) == 8
    database_url = await template.new_database()
    service_id = make_service_id()
    env = {**os.environ, "IEF_DATABASE_URL": database_url, "IEF_SERVICE_ID": service_id}
    async with running_server(Settings(), database_url, service_id) as server:
        script = "".join(
            f"{command.replace('http://127.0.0.1:8080', server.base_url)}\necho; echo {_MARK} $?\n"
            for command in commands
        )
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", script, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    parts = re.split(rf"{_MARK} (\d+)\n", out.decode())
    outputs, codes = parts[0:-1:2], [int(code) for code in parts[1::2]]
    assert codes == [0] * len(commands), (codes, err.decode())
    added, anonymous, token, put, listed, history, batch, refused = (o.strip() for o in outputs)
    assert added.startswith("added gateway 0f8fad5b-d9cb-469f-a165-70867728950e")
    assert msgspec.json.decode(anonymous)["resourceType"] == "OperationOutcome"
    assert token == ""
    assert msgspec.json.decode(put)["status"] == "active"
    assert [r["serviceId"] for r in msgspec.json.decode(listed)["records"]] == ["0f8fad5b-d9cb-469f-a165-70867728950e"]
    assert [e["change"] for e in msgspec.json.decode(history)["history"]] == ["created"]
    assert msgspec.json.decode(batch)["updated"] == 1
    outcome = msgspec.json.decode(refused)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "check digit" in outcome["issue"][0]["diagnostics"]
