"""Search result Bundles."""

from __future__ import annotations

from typing import Any

__all__ = ("searchset", "searchset_of")


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
