"""List commands as the real CLI prints them: a header line over aligned columns, or JSON lines with ``--json``."""

from __future__ import annotations

import re

from tests.cli import run_cli
from tests.factories import make_service_id
from tests.server import RunningServer


def _columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


async def test_services_list_has_a_header_line(server: RunningServer) -> None:
    """``services list`` starts with the column names, each column starting where its header starts."""
    service_id = make_service_id()
    added = await run_cli(
        server, "services", "add", "--id", service_id, "--kind", "gateway", "--name", "Listed Imaging",
        "--base-url", "https://listed.example/fhir",
    )  # fmt: skip
    assert added.code == 0, added.err
    listed = await run_cli(server, "services", "list")
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert _columns(header) == ["SERVICE ID", "KIND", "STATUS", "STYLE", "NAME", "BASE URL", "CREDENTIALS"]
    [row] = [row for row in rows if row.startswith(service_id)]
    assert _columns(row) == [
        service_id,
        "gateway",
        "enabled",
        "ief",
        "Listed Imaging",
        "https://listed.example/fhir",
        "none",
    ]
    for title in ("KIND", "NAME", "BASE URL"):
        assert row[header.index(title) - 2 : header.index(title)] == "  ", f"{title} column is aligned"


async def test_clients_list_has_a_header_line(server: RunningServer) -> None:
    """``clients list`` starts with the column names; the operator client is listed under them."""
    listed = await run_cli(server, "clients", "list")
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert _columns(header) == ["CLIENT ID", "STATUS", "AUTHENTICATION", "SERVICE ID", "NAME", "SCOPES"]
    assert any(_columns(row)[0] == "operator" for row in rows), rows
