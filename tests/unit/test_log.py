"""Log output: JSON lines that any JSON parser reads."""

from __future__ import annotations

import subprocess
import sys

import msgspec

from tests.bench.servers import ROOT

_SCRIPT = """
import datetime, uuid
from registry.log import configure_logging, get_logger
configure_logging("info", "json")
log = get_logger("registry.test")
log.info("server_stopped", at=datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC), id=uuid.UUID(int=1), odd=object())
log.debug("audit_sealed", rows=1)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("unhandled_error")
"""


def test_json_logging_writes_one_object_per_line() -> None:
    """Each event is one JSON object on its own line with event, level and UTC timestamp; other values become text."""
    finished = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    lines = [msgspec.json.decode(line) for line in finished.stderr.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("server_stopped", "info"),
        ("unhandled_error", "error"),
    ]
    first = lines[0]
    assert first["at"] == "2030-01-02T00:00:00Z"
    assert first["id"] == "00000000-0000-0000-0000-000000000001"
    assert first["odd"].startswith("<object object")
    assert first["timestamp"].endswith("Z")
    assert "ZeroDivisionError" in lines[1]["exception"]
