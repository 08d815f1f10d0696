"""Named queries: parsed from sql/queries, unique, and every name the code uses exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry.db.migrate import known_migrations
from registry.db.queries import load_queries, parse_queries

ROOT = Path(__file__).resolve().parents[2]


def test_parse_blocks_and_descriptions() -> None:
    """Each `-- name:` block becomes one statement; comment lines are not part of it."""
    found = parse_queries("-- name: one\n-- says what\nSELECT 1;\n\n-- name: two\nSELECT 2\n", "x.sql")
    assert found == {"one": "SELECT 1", "two": "SELECT 2"}


def test_duplicate_and_empty_names_fail() -> None:
    """A name defined twice, or a name with no statement, is an error."""
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "x.sql")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n-- nothing\n", "x.sql")


def test_unknown_name_says_what_exists() -> None:
    """Asking for a query that does not exist fails at once and lists the known names."""
    with pytest.raises(KeyError, match="put_record"):
        load_queries()["no_such_query"]


def test_every_query_name_used_in_code_exists() -> None:
    """Every `_q["name"]` in the code names a query in sql/queries."""
    queries = load_queries()
    used: set[str] = set()
    for package in ("registry", "federation", "broker"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r'_q\["([a-z_0-9]+)"\]', path.read_text(encoding="utf-8")))
    assert used, "no query use found: the pattern is out of date"
    missing = sorted(name for name in used if name not in queries)
    assert missing == []


def test_migrations_are_numbered_without_gaps() -> None:
    """Migration files are NNNN_name.sql numbered 1, 2, 3… with no gap or repeat."""
    versions = [m.version for m in known_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def _normalised(sql: str) -> str:
    return " ".join(sql.split())


def test_the_audited_look_up_reads_what_the_plain_look_up_reads() -> None:
    """``get_records_audited`` repeats ``get_records``' SELECT in its ``found`` CTE (the loader shares no
    fragments): the two must read the same columns of the same rows under the same routing rule, so a look-up
    answers the same whichever of them ran. A change to one without the other fails here."""
    queries = load_queries()
    plain = _normalised(queries["get_records"])
    audited = _normalised(queries["get_records_audited"])
    select = plain.removesuffix(" ORDER BY r.service_id")
    assert select != plain, "get_records no longer ends with its ORDER BY"
    found = re.search(r"WITH found AS MATERIALIZED \((.*?)\), audited AS \(", audited)
    assert found is not None, "get_records_audited no longer begins with its found CTE"
    assert found.group(1).strip() == select
    assert audited.endswith("FROM found f ORDER BY f.service_id")
