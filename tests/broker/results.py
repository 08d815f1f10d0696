"""Reading the broker's searchset Bundles in tests."""

from __future__ import annotations

import random
from typing import Any

__all__ = ("SOURCE_EXTENSION", "issues", "matches", "new_uid", "sources", "uids")

SOURCE_EXTENSION = "https://ief-registry.org/fhir/StructureDefinition/broker-source"
_OUTCOME_SYSTEM = "https://ief-registry.org/fhir/CodeSystem/broker-outcome"


def new_uid() -> str:
    """A fresh DICOM UID (under the UUID-derived root 2.25)."""
    return f"2.25.{random.getrandbits(100)}"


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The match entries of a searchset, in order."""
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def uids(bundle: dict[str, Any]) -> list[str]:
    """The Study Instance UIDs of the matches, in order (the ``urn:dicom:uid`` identifier, without ``urn:oid:``)."""
    return [
        next(i["value"] for i in e["resource"]["identifier"] if i["system"] == "urn:dicom:uid").removeprefix("urn:oid:")
        for e in matches(bundle)
    ]


def sources(entry: dict[str, Any]) -> list[str]:
    """The service IDs a merged entry names as its sources, in order."""
    return [ext["valueIdentifier"]["value"] for ext in entry["resource"]["extension"] if ext["url"] == SOURCE_EXTENSION]


def issues(bundle: dict[str, Any]) -> dict[str, list[str]]:
    """The outcome entry's issues as ``{service ID: [broker-outcome codes]}`` (one outcome entry at most)."""
    outcomes = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    if not outcomes:
        return {}
    assert len(outcomes) == 1, "one OperationOutcome entry at most"
    found: dict[str, list[str]] = {}
    for issue in outcomes[0]["resource"]["issue"]:
        service = next(ext["valueIdentifier"]["value"] for ext in issue["extension"] if ext["url"] == SOURCE_EXTENSION)
        coding = issue["details"]["coding"][0]
        assert coding["system"] == _OUTCOME_SYSTEM
        found.setdefault(service, []).append(coding["code"])
    return found
