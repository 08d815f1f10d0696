"""FHIR's result parameters applied to an answer: ``_summary``, ``_elements``, ``_total``.

Pure functions over FHIR JSON (dicts), applied once for every FHIR route by
``registry.fhirapi.shaping``. Which elements are summary elements and which are mandatory is read
from the R4B models (the definitions' ``isSummary`` and ``min``), so every resource type the server
serves, now or later, is shaped by the same rules:

- ``_summary=true``: the summary elements; ``text``: ``text``, ``id``, ``meta`` and the mandatory
  elements; ``data``: everything but ``text``; ``count``: a search Bundle without its entries;
  ``false``: everything.
- ``_elements=a,b``: those top-level elements, plus ``id``, ``meta`` and every mandatory element (so
  the answer stays a valid resource).

A subsetted resource is tagged ``SUBSETTED`` (FHIR R4 §3.1.1.5.7). In a ``searchset`` or ``history``
Bundle the result parameters apply to the matched resources, never to OperationOutcome entries.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

__all__ = (
    "SUBSETTED",
    "SUMMARY_MODES",
    "TOTAL_MODES",
    "ResultParameters",
    "add_outcome_issues",
    "shape",
)

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
SUMMARY_MODES = ("true", "text", "data", "count", "false")
TOTAL_MODES = ("none", "estimate", "accurate")
_ALWAYS = frozenset({"resourceType", "id", "meta"})
_BUNDLES = frozenset({"searchset", "history"})
_UNSHAPED = frozenset({"OperationOutcome", "Parameters"})


class ResultParameters:
    """The result parameters of one request, checked (``summary``, ``elements``, ``total``)."""

    __slots__ = ("elements", "summary", "total")

    def __init__(self, summary: str | None = None, elements: frozenset[str] | None = None, total: str | None = None):
        self.summary = None if summary == "false" else summary
        self.elements = elements
        self.total = total

    @property
    def active(self) -> bool:
        """Whether anything is to be changed."""
        return bool(self.summary or self.elements is not None or self.total == "none")


@functools.cache
def _fields(resource_type: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(summary elements, mandatory elements) of a resource type by JSON name; None for an unknown type."""
    try:
        model = get_fhir_model_class(resource_type)
    except KeyError:
        return None
    summary: set[str] = set()
    mandatory: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        json_name = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if field.is_required() or extra.get("element_required"):
            mandatory.add(json_name)
    return frozenset(summary), frozenset(mandatory)


def _kept(resource: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """The resource with only the elements ``keep`` names (and their ``_name`` primitive extensions), tagged."""
    out = {key: value for key, value in resource.items() if key in keep or (key[:1] == "_" and key[1:] in keep)}
    if len(out) == len(resource):
        return out
    meta = dict(out.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if SUBSETTED not in tags:
        tags.append(SUBSETTED)
    meta["tag"] = tags
    out["meta"] = meta
    return {"resourceType": out.pop("resourceType"), **out} if "resourceType" in out else out


def _resource(resource: dict[str, Any], params: ResultParameters) -> dict[str, Any]:
    """One resource shaped by ``_summary`` / ``_elements``."""
    if resource.get("resourceType") in _UNSHAPED:
        return resource
    fields = _fields(str(resource.get("resourceType")))
    if fields is None:
        return resource
    summary, mandatory = fields
    keep = {
        "true": _ALWAYS | mandatory | summary,
        "text": _ALWAYS | mandatory | {"text"},
        "data": frozenset(resource) - {"text"},
    }
    if params.elements is not None:
        return _kept(resource, _ALWAYS | mandatory | params.elements)
    return _kept(resource, keep[params.summary]) if params.summary in keep else resource


def shape(resource: dict[str, Any], params: ResultParameters) -> dict[str, Any]:
    """An answer shaped by the result parameters: a search or history Bundle entry by entry, else the resource."""
    if resource.get("resourceType") != "Bundle" or resource.get("type") not in _BUNDLES:
        return resource if params.summary == "count" else _resource(resource, params)
    bundle = dict(resource)
    if params.total == "none":
        bundle.pop("total", None)
    entries = bundle.get("entry") or []
    if params.summary == "count":
        entries = [e for e in entries if (e.get("search") or {}).get("mode") == "outcome"]
    elif params.summary or params.elements is not None:
        entries = [{**e, "resource": _resource(e["resource"], params)} if "resource" in e else e for e in entries]
    if entries:
        bundle["entry"] = entries
    else:
        bundle.pop("entry", None)
    return bundle


def add_outcome_issues(bundle: dict[str, Any], issues: list[dict[str, Any]]) -> dict[str, Any]:
    """A search Bundle with ``issues`` in its OperationOutcome entry (``search.mode = outcome``), made if absent."""
    if not issues or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
        return bundle
    entries = list(bundle.get("entry") or [])
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        if (entry.get("search") or {}).get("mode") == "outcome" and resource.get("resourceType") == "OperationOutcome":
            entries[index] = {**entry, "resource": {**resource, "issue": [*resource.get("issue", []), *issues]}}
            break
    else:
        outcome = {"resourceType": "OperationOutcome", "issue": issues}
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": outcome, "search": {"mode": "outcome"}})
    return {**bundle, "entry": entries}
