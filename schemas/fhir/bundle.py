"""Search result Bundles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ("HistoryEntry", "history", "searchset", "searchset_of")


def searchset(
    base: str,
    resources: list[dict[str, Any]],
    *,
    total: int,
    links: list[tuple[str, str]],
    outcomes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of matches (and ``outcomes``: entries in search mode ``outcome``); ``base`` is
    the FHIR base their ``fullUrl`` hangs off."""
    entries = [
        {
            "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": "match"},
        }
        for resource in resources
    ]
    return searchset_of([*entries, *(outcomes or [])], total=total, links=links)


def searchset_of(entries: list[dict[str, Any]], *, total: int, links: list[tuple[str, str]]) -> dict[str, Any]:
    """A ``searchset`` Bundle of ready entries (each with its own ``fullUrl`` and ``search.mode``)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return bundle


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version in a history Bundle: the resource as that version was, and the interaction that made it."""

    resource: dict[str, Any]
    method: str
    """``POST`` (the version that created the resource) or ``PUT``."""
    status: str
    """The HTTP status the interaction answered (``201``, ``200``)."""
    when: datetime
    extension: tuple[dict[str, Any], ...] = ()
    """Extensions of the entry (what the change was, who made it)."""


def history(
    base: str,
    versions: list[HistoryEntry],
    *,
    total: int,
    links: list[tuple[str, str]],
    outcome: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``history`` Bundle, newest version first; ``base`` is the FHIR base the ``fullUrl``s hang off.

    ``outcome`` (the history's relative URL and an OperationOutcome) ends the Bundle with an entry that
    carries no resource, only that outcome in ``response.outcome`` (how a history Bundle says
    something of itself: a ``suppressed`` issue when versions were withheld)."""
    entries = []
    for version in versions:
        resource = version.resource
        kind, rid, vid = resource["resourceType"], resource["id"], resource["meta"]["versionId"]
        entry: dict[str, Any] = {"extension": list(version.extension)} if version.extension else {}
        entry |= {
            "fullUrl": f"{base}/{kind}/{rid}",
            "resource": resource,
            "request": {"method": version.method, "url": kind if version.method == "POST" else f"{kind}/{rid}"},
            "response": {
                "status": version.status,
                "location": f"{kind}/{rid}/_history/{vid}",
                "etag": f'W/"{vid}"',
                "lastModified": version.when,
            },
        }
        entries.append(entry)
    if outcome is not None:
        url, said = outcome
        entries.append({"request": {"method": "GET", "url": url}, "response": {"status": "200", "outcome": said}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    if entries:
        bundle["entry"] = entries
    return bundle
