"""The operator documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from registry.config import describe_settings
from registry.log import EVENTS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented_with_its_default() -> None:
    """docs/operations.md has a row for every setting with the variable, key and current default."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    for doc in describe_settings():
        assert f"| `{doc.env}` | `{doc.key}` | `{doc.default}` |" in text, doc.env


def test_every_log_event_is_documented() -> None:
    """docs/operations.md lists every log event of the catalogue."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    for event in EVENTS:
        assert f"| `{event}` |" in text, event
