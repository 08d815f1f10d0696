"""Search result Bundles."""

from __future__ import annotations

from typing import Any

__all__ = ("searchset",)


def searchset(
    base: str, resources: list[dict[str, Any]], *, total: int, links: list[tuple[str, str]]
) -> dict[str, Any]:
    """A ``searchset`` Bundle of matches; ``base`` is the FHIR base their ``fullUrl`` hangs off."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    if resources:  # FHIR JSON has no empty arrays
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ]
    return bundle
