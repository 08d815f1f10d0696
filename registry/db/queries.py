"""Named SQL statements loaded once from ``sql/queries/*.sql``.

A file holds blocks that start with ``-- name: <name>``; comment lines right under the name are
its description. Names are unique across files. Repositories are the only callers.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

__all__ = ("SQL_DIR", "Queries", "load_queries")

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
"""The ``sql/`` folder: the one place its location is decided."""

_NAME = re.compile(r"-- *name: *([a-z_][a-z0-9_]*)")


class Queries:
    """Query text by name; an unknown name fails at once with the names that exist."""

    __slots__ = ("_by_name",)

    def __init__(self, by_name: dict[str, str]) -> None:
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no query named {name!r}; known: {', '.join(sorted(self._by_name))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        """Every query name, sorted."""
        return sorted(self._by_name)


def parse_queries(text: str, origin: str) -> dict[str, str]:
    """Split one ``.sql`` file into named statements."""
    found: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if name is not None:
            body = "\n".join(line for line in lines if not line.lstrip().startswith("--")).strip()
            if not body:
                raise ValueError(f"{origin}: query {name!r} is empty")
            found[name] = body.rstrip(";")

    for line in text.splitlines():
        match = _NAME.fullmatch(line.strip())
        if match:
            flush()
            name, lines = match.group(1), []
            if name in found:
                raise ValueError(f"{origin}: query {name!r} defined twice")
        elif name is not None:
            lines.append(line)
    flush()
    return found


@cache
def load_queries(folder: Path = SQL_DIR / "queries") -> Queries:
    """Load every named query under ``folder`` (cached: read once per process)."""
    by_name: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        for name, body in parse_queries(path.read_text(encoding="utf-8"), path.name).items():
            if name in by_name:
                raise ValueError(f"{path.name}: query {name!r} also defined in another file")
            by_name[name] = body
    return Queries(by_name)
