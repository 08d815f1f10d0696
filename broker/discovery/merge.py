"""Merging gateways' answers into one result (pure: no I/O, no clock).

``normalise`` turns one resource as a gateway sent it into one that stands on its own in the
broker's Bundle:

- its ``fullUrl`` is absolute at the gateway (``{base}/{type}/{id}``), so its relative references
  (``Patient/…``, ``Endpoint/…``) resolve against the gateway, as FHIR resolves references in a
  Bundle entry;
- ``endpoint`` items that are inline Endpoint objects (as Harmony sends them) become contained
  ``Endpoint`` resources referenced as ``#id``, with the elements R4 requires filled in;
- relative ``Endpoint.address`` values (and DocumentReference attachment URLs) are made absolute
  against the gateway's FHIR base (RFC 3986: ``/api/jmix?…`` is relative to the gateway's host,
  ``Binary/1`` to its FHIR base).

``merge`` de-duplicates (ImagingStudy by Study Instance UID, DocumentReference by
``masterIdentifier``, anything else by ``fullUrl``), keeps the copy of the first gateway asked
that had a valid one (validity is the caller's ``check``: only copies that may be kept are
checked, which saves checking duplicates; ``Verdicts`` checks them as the answers arrive),
records every gateway that had it (``broker-source`` extensions, ``meta.source`` the first's
FHIR base) and orders the result newest first (undated last).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import msgspec

from broker.discovery.dates import sort_instant
from schemas.fhir.canonical import CONNECTION_TYPE_SYSTEM, EXT_BROKER_SOURCE
from schemas.fhir.discovery import source_extension
from schemas.types import SearchStyle

if TYPE_CHECKING:
    from collections.abc import Iterable

    from broker.discovery.query import SearchKind
    from schemas.fhir.canonical import Canonicals

__all__ = (
    "DICOM_UID_SYSTEM",
    "Check",
    "Found",
    "MergeResult",
    "Source",
    "Verdicts",
    "absolute",
    "merge",
    "normalise",
    "study_uid",
)

DICOM_UID_SYSTEM = "urn:dicom:uid"
_ENDPOINT_STATUS = frozenset({"active", "suspended", "error", "off", "entered-in-error", "test"})
_PAYLOAD_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"


@dataclass(frozen=True, slots=True)
class Source:
    """A gateway asked in a search: its service ID, name, FHIR base URL (no trailing slash) and style."""

    service_id: str
    name: str
    base_url: str
    style: SearchStyle


@dataclass(frozen=True, slots=True)
class Found:
    """One resource a gateway returned, normalised.

    Attributes:
        key: what identifies the same study (or report) at several gateways.
        resource: the resource, with contained endpoints and absolute addresses.
        full_url: its absolute URL at the gateway.
        source: the gateway.
        when: when it began (POSIX seconds) for ordering; None when undated.
    """

    key: str
    resource: dict[str, Any]
    full_url: str
    source: Source
    when: float | None


def absolute(base: str, address: str) -> str:
    """``address`` made absolute against the FHIR base ``base`` (RFC 3986); absolute URLs are kept."""
    if urlsplit(address).scheme:
        return address
    return urljoin(base.rstrip("/") + "/", address)


def study_uid(resource: dict[str, Any], *, id_is_uid: bool = False) -> str | None:
    """The Study Instance UID of an ImagingStudy: its ``urn:dicom:uid`` identifier (``urn:oid:`` prefix
    dropped), else its id when the gateway's style makes the id the UID (Harmony)."""
    for identifier in _items(resource.get("identifier")):
        value = identifier.get("value")
        if identifier.get("system") == DICOM_UID_SYSTEM and isinstance(value, str) and value:
            return value.removeprefix("urn:oid:")
    rid = resource.get("id")
    return rid if id_is_uid and isinstance(rid, str) and rid else None


def _items(value: Any) -> list[dict[str, Any]]:
    """The objects of a repeating element (a single object counts as a list of one)."""
    if isinstance(value, dict):
        return [value]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _key(resource: dict[str, Any], kind: SearchKind, source: Source, full_url: str) -> str:
    if kind.resource_type == "ImagingStudy":
        uid = study_uid(resource, id_is_uid=source.style is SearchStyle.HARMONY)
        if uid:
            return f"uid:{uid}"
    elif kind.resource_type == "DocumentReference":
        master = resource.get("masterIdentifier")
        if isinstance(master, dict) and isinstance(master.get("value"), str):
            return f"master:{master.get('system', '')}|{master['value']}"
    return f"url:{full_url}"


def _coding(value: Any, default: dict[str, str]) -> dict[str, Any]:
    """A Coding from what a gateway sent: a code, a Coding, or a CodeableConcept (its first coding)."""
    if isinstance(value, str) and value:
        return {**default, "code": value}
    if isinstance(value, dict):
        if isinstance(value.get("code"), str):
            return {k: v for k, v in value.items() if k in ("system", "code", "display")}
        codings = _items(value.get("coding"))
        if codings and isinstance(codings[0].get("code"), str):
            return {k: v for k, v in codings[0].items() if k in ("system", "code", "display")}
    return default


def _concepts(value: Any) -> list[dict[str, Any]]:
    """CodeableConcepts from what a gateway sent as a payload type: text, codes or concepts."""
    values = value if isinstance(value, list) else [value]
    concepts: list[dict[str, Any]] = []
    for item in values:
        if isinstance(item, str) and item:
            concepts.append({"text": item})
        elif isinstance(item, dict) and ("coding" in item or "text" in item):
            concepts.append(item)
        elif isinstance(item, dict) and isinstance(item.get("code"), str):
            concepts.append({"coding": [_coding(item, {})]})
    return concepts or [{"coding": [{"system": _PAYLOAD_TYPE_SYSTEM, "code": "any"}]}]


def _contained_endpoint(inline: dict[str, Any], endpoint_id: str, base: str) -> dict[str, Any] | None:
    """An inline endpoint object as a valid contained ``Endpoint``; None when it has no address."""
    address = inline.get("address")
    if not isinstance(address, str) or not address:
        return None
    status = inline.get("status")
    endpoint: dict[str, Any] = {
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "status": status if status in _ENDPOINT_STATUS else "active",
        "connectionType": _coding(
            inline.get("connectionType"), {"system": CONNECTION_TYPE_SYSTEM, "code": "hl7-fhir-rest"}
        ),
        "payloadType": _concepts(inline.get("payloadType")),
        "address": absolute(base, address),
    }
    if isinstance(inline.get("name"), str):
        endpoint["name"] = inline["name"]
    return endpoint


_REFERENCE_ELEMENTS = frozenset({"id", "extension", "reference", "type", "identifier", "display"})


def _is_reference(item: dict[str, Any]) -> bool:
    """A Reference has only Reference's elements; anything else is an inline endpoint object."""
    return item.keys() <= _REFERENCE_ELEMENTS


class _Container:
    """The contained resources of one resource, growing as inline endpoints are taken in."""

    def __init__(self, resource: dict[str, Any], base: str) -> None:
        self.base = base
        self.items: list[dict[str, Any]] = []
        for item in _items(resource.get("contained")):
            if item.get("resourceType") == "Endpoint" and isinstance(item.get("address"), str):
                self.items.append({**item, "address": absolute(base, item["address"])})
            else:
                self.items.append(item)
        self._ids = {item.get("id") for item in self.items}

    def references(self, endpoints: Any) -> list[dict[str, Any]]:
        """``endpoint`` items as references: references kept, inline endpoints contained and referenced."""
        references: list[dict[str, Any]] = []
        for item in _items(endpoints):
            if _is_reference(item):
                references.append(item)
                continue
            endpoint_id = self._new_id()
            contained = _contained_endpoint(item, endpoint_id, self.base)
            if contained is not None:
                self.items.append(contained)
                references.append({"reference": f"#{endpoint_id}"})
        return references

    def _new_id(self) -> str:
        number = len(self._ids)
        while f"endpoint-{number}" in self._ids:
            number += 1
        self._ids.add(f"endpoint-{number}")
        return f"endpoint-{number}"


def _set_or_drop(resource: dict[str, Any], name: str, value: list[dict[str, Any]]) -> None:
    if value:  # FHIR JSON has no empty arrays
        resource[name] = value
    else:
        resource.pop(name, None)


def normalise(resource: dict[str, Any], source: Source, kind: SearchKind) -> Found:
    """One resource as a gateway sent it, ready for the merged Bundle (see the module's description)."""
    result = dict(resource)
    base = source.base_url
    container = _Container(resource, base)
    if "endpoint" in result:
        _set_or_drop(result, "endpoint", container.references(result["endpoint"]))
    if isinstance(result.get("series"), list):
        series = []
        for item in result["series"]:
            if isinstance(item, dict) and "endpoint" in item:
                copy = dict(item)
                _set_or_drop(copy, "endpoint", container.references(item["endpoint"]))
                series.append(copy)
            else:
                series.append(item)
        result["series"] = series
    if isinstance(result.get("content"), list):
        result["content"] = [_absolute_attachment(item, base) for item in result["content"]]
    _set_or_drop(result, "contained", container.items)
    rid = result.get("id")
    full_url = f"{base}/{kind.resource_type}/{rid}" if isinstance(rid, str) and rid else f"urn:uuid:{uuid.uuid4()}"
    return Found(
        key=_key(result, kind, source, full_url),
        resource=result,
        full_url=full_url,
        source=source,
        when=sort_instant(result.get(kind.date_element)),
    )


def _absolute_attachment(content: Any, base: str) -> Any:
    if not isinstance(content, dict) or not isinstance(content.get("attachment"), dict):
        return content
    url = content["attachment"].get("url")
    if not isinstance(url, str) or not url:
        return content
    return {**content, "attachment": {**content["attachment"], "url": absolute(base, url)}}


Check = Callable[[dict[str, Any]], str | None]
"""Says why a resource is not valid, or None when it is."""


_canonical = msgspec.json.Encoder(order="sorted").encode
"""A resource's JSON with its keys sorted: equal for copies equal as JSON values."""


class Verdicts:
    """``check`` run as each gateway's answer arrives, so that the merge, once the last answer is in, has
    only to read the verdicts: the checking is done while the slower gateways are still awaited.

    ``arrived(index, found)`` checks a gateway's copies (``index``: its place in the order asked),
    each only while it could still be the one kept: a copy is skipped once a valid copy of the same
    study from a gateway asked earlier, or earlier in the same answer, is known. ``check`` is then
    the merge's: it answers from the verdicts (by the resource's identity) and checks what was not
    checked, so the result is the one checking at merge time would give (the copy of the first
    gateway asked that had a valid one), whatever order the answers came in.
    """

    def __init__(self, check: Check) -> None:
        self._check = check
        self._said: dict[int, str | None] = {}
        self._by_content: dict[bytes, str | None] = {}
        self._best: dict[str, int] = {}

    def arrived(self, index: int, found: Iterable[Found]) -> None:
        """Check the copies of the gateway asked ``index``-th that may be kept."""
        for item in found:
            best = self._best.get(item.key)
            if best is not None and best <= index:
                continue
            if self.check(item.resource) is None:
                self._best[item.key] = index

    def check(self, resource: dict[str, Any]) -> str | None:
        """Why ``resource`` is not valid, or None (checked once, and once for identical copies: gateways that
        serve one archive often send the same study byte for byte)."""
        key = id(resource)  # the copies stay referenced by their answers for the whole search
        if key in self._said:
            return self._said[key]
        content = _canonical(resource)
        if content in self._by_content:
            said = self._by_content[content]
        else:
            said = self._by_content[content] = self._check(resource)
        self._said[key] = said
        return said


@dataclass(slots=True)
class _Merged:
    first: Found
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged entries, newest first, and the copies left out because ``check`` refused them."""

    entries: list[dict[str, Any]]
    rejected: list[tuple[Found, str]]


def merge(answers: Iterable[Iterable[Found]], canon: Canonicals, check: Check) -> MergeResult:
    """The searchset entries (``search.mode = match``) of gateways' answers, given in the order the
    gateways were asked: one per study or report, newest first.

    Of the copies of one study, the first that ``check`` accepts is kept (later copies are not
    checked: they are not returned); refused copies are left out and listed. The sources are every
    gateway that had the study, except those whose copy was refused.
    """
    groups: dict[str, list[Found]] = {}
    for found in answers:
        for item in found:
            groups.setdefault(item.key, []).append(item)
    kept: list[_Merged] = []
    rejected: list[tuple[Found, str]] = []
    for copies in groups.values():
        refused: set[int] = set()
        for index, copy in enumerate(copies):
            error = check(copy.resource)
            if error is None:
                sources = [c.source.service_id for i, c in enumerate(copies) if i not in refused]
                kept.append(_Merged(copy, list(dict.fromkeys(sources))))
                break
            refused.add(index)
            rejected.append((copy, error))
    kept.sort(key=lambda m: (-m.first.when if m.first.when is not None else math.inf, m.first.key))
    return MergeResult([_entry(m, canon) for m in kept], rejected)


def _entry(merged: _Merged, canon: Canonicals) -> dict[str, Any]:
    resource = dict(merged.first.resource)
    meta = resource.get("meta")
    resource["meta"] = {**(meta if isinstance(meta, dict) else {}), "source": merged.first.source.base_url}
    ours = canon.extension(EXT_BROKER_SOURCE)
    theirs = [ext for ext in _items(resource.get("extension")) if ext.get("url") != ours]
    resource["extension"] = [*theirs, *(source_extension(canon, sid) for sid in merged.sources)]
    return {"fullUrl": merged.first.full_url, "resource": resource, "search": {"mode": "match"}}
