"""The operator documentation stays in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from registry.config import Settings, describe_settings
from registry.log import EVENTS
from registry.server.app import Features
from schemas.errors import ERRORS
from schemas.fhir.canonical import Canonicals
from schemas.fhir.definitions import conformance_resources
from schemas.fhir.outcome import ISSUE_TYPES
from tests.fhir import parse_resource

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


def test_every_error_code_is_in_the_catalogue() -> None:
    """docs/fhir.md's error catalogue has a row for every code the server answers with, its status and issue type."""
    text = (DOCS / "fhir.md").read_text(encoding="utf-8")
    for code, kind in ERRORS.items():
        assert f"| `{code}` | {kind.status} | `{ISSUE_TYPES[kind.status]}` |" in text, code


def test_fhir_examples_are_valid_r4b() -> None:
    """Every JSON example in docs/fhir.md parses with the fhir.resources R4B model of its type."""
    text = (DOCS / "fhir.md").read_text(encoding="utf-8")
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert len(examples) >= 7
    for example in examples:
        parse_resource(msgspec.json.decode(example))


def test_every_fhir_definition_and_search_parameter_is_documented() -> None:
    """docs/fhir.md names every published conformance resource and every search parameter of the facade."""
    text = (DOCS / "fhir.md").read_text(encoding="utf-8")
    for resource in conformance_resources(Canonicals("https://ief-registry.org/fhir"), "0"):
        assert f"`{resource['id']}`" in text or resource["url"] in text, resource["url"]
    for capability in Features.of(Settings()).capabilities:
        for param in capability.search:
            for spelling in param.accepted:
                assert f"`{spelling}`" in text, (capability.type, spelling)


def test_every_reference_to_a_document_names_one_that_exists() -> None:
    """A ``docs/…`` path named in the code, the SQL, the tests or the docs' own links is a file of the repository."""
    root = DOCS.parent
    named = re.compile(r"(?<![\w/])(?:\.\./)?((?:docs/)?adr/\d{4}-[a-z0-9-]+\.md|docs/[a-z0-9_-]+\.md)")
    texts = [
        *root.glob("registry/**/*.py"), *root.glob("broker/**/*.py"), *root.glob("federation/**/*.py"),
        *root.glob("schemas/**/*.py"), *root.glob("sql/**/*.sql"), *root.glob("tests/**/*.py"),
        *DOCS.glob("**/*.md"), root / "README.md",
    ]  # fmt: skip
    missing = []
    for path in texts:
        for match in named.finditer(path.read_text(encoding="utf-8")):
            target = match[1] if match[1].startswith("docs/") else f"docs/{match[1]}"
            if not (root / target).is_file():
                missing.append(f"{path.relative_to(root)}: {match[1]}")
    assert missing == []
