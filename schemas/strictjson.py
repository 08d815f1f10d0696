"""The one way JSON from outside is decoded: nesting bounded before decoding, duplicate keys refused.

Every request body (native records, batch items and NDJSON lines, FHIR resources), every token's
header and claims, and every answer from another server goes through ``decode``:

- **Depth first.** Before anything is decoded, the text's structure is taken out of it (strings
  removed, then everything but brackets and colons) and its nesting is measured by removing
  empty bracket pairs level by level, at most ``max_depth`` times: bytes operations only, so a
  megabyte costs milliseconds and a 100,000-level body is refused at once (a run of more opening
  brackets than allowed). A decoder recursing 100,000 levels deep exhausts the stack; one that
  stops at its recursion limit raises something nobody catches (that was a 500).
- **Then msgspec** decodes (C speed, linear).
- **Then duplicate keys.** JSON leaves ``{"status": "removed", "status": "active"}`` undefined and
  parsers disagree on it (first wins, last wins, error), so a proxy, an audit reader and this
  server can each see another document. The colons outside strings count the keys of the text;
  the decoded objects hold fewer when a key was repeated, which is then named. Answers from
  other servers may skip this check (``duplicate_keys=True``): they are read, not stored as sent.

JsonError (a ValueError)
├── NotJson          not JSON text at all
├── TooDeep          arrays and objects nested deeper than allowed
└── DuplicateKey     an object names one key twice
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

__all__ = ("MAX_DEPTH", "REMOTE_MAX_DEPTH", "DuplicateKey", "JsonError", "NotJson", "TooDeep", "check_depth", "decode")

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a request body or a token (a RegistryRecord or
Subscription needs fewer than ten levels)."""

REMOTE_MAX_DEPTH = 64
"""Deepest nesting accepted in an answer from another server (a gateway's searchset Bundle of
ImagingStudy resources with extensions needs about fifteen)."""

_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}:')
"""Every byte but quotes, brackets and colons (deleted to leave the structure)."""
_UNIFY = bytes.maketrans(b"[]{}", b"()()")
_decoder = msgspec.json.Decoder()


class JsonError(ValueError):
    """JSON that is refused."""


class NotJson(JsonError):
    """The text is not JSON."""


class TooDeep(JsonError):
    """Arrays and objects are nested deeper than allowed."""


class DuplicateKey(JsonError):
    """An object names the same key twice."""


def _structure(raw: bytes) -> bytes:
    """The brackets (as ``(`` and ``)``) and colons of ``raw`` outside its strings."""
    if b"\\" in raw:  # escaped backslashes first, so that an escaped quote is never a string's end
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(raw.translate(None, _STRUCTURE).split(b'"')[::2]).translate(_UNIFY)


def _too_deep(brackets: bytes, limit: int) -> bool:
    """Whether balanced ``brackets`` nest deeper than ``limit`` (False for unbalanced ones: not JSON)."""
    if b"(" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        if not brackets:
            return False
        fewer = brackets.replace(b"()", b"")
        if len(fewer) == len(brackets):
            return False  # unbalanced: the decoder says what is wrong
        brackets = fewer
    return b"()" in brackets


def _keys(value: Any) -> int:
    """How many keys the objects in a decoded value hold (iteratively: the depth is already bounded)."""
    keys, level = 0, [value]
    while level:
        below: list[Any] = []
        for item in level:
            if type(item) is dict:
                keys += len(item)
                below.extend(item.values())
            elif type(item) is list:
                below.extend(item)
        level = below
    return keys


def _first_repeated_key(raw: bytes) -> str:
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _value in items:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return repeated[0] if repeated else "?"


def check_depth(raw: bytes, max_depth: int) -> int:
    """Refuse ``raw`` when its arrays and objects nest deeper than ``max_depth``; return its key count
    (for a caller that decodes into a type of its own, with ``msgspec`` directly).

    Raises:
        TooDeep: nesting deeper than ``max_depth``.
    """
    structure = _structure(raw)
    if _too_deep(structure.replace(b":", b""), max_depth):
        raise TooDeep(f"the JSON is nested more than {max_depth} levels deep")
    return structure.count(b":")


def decode(text: bytes | str, *, max_depth: int = MAX_DEPTH, duplicate_keys: bool = False) -> Any:
    """Decode JSON from outside this server.

    Raises:
        TooDeep: nesting deeper than ``max_depth`` (checked before decoding).
        NotJson: not JSON.
        DuplicateKey: an object repeats a key (unless ``duplicate_keys``).
    """
    raw = text.encode() if isinstance(text, str) else text
    keys = check_depth(raw, max_depth)
    try:
        value = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise NotJson(f"the body is not valid JSON: {exc}") from None
    if not duplicate_keys and keys and _keys(value) != keys:
        key = _first_repeated_key(raw)
        raise DuplicateKey(f"the JSON object names the key {key[:64]!r} more than once")
    return value
