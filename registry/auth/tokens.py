"""The shape of a JWT from outside, checked before any JOSE library reads it.

Bearer tokens and client assertions arrive from anyone, signed or not. ``unverified(token)``
splits a compact JWS, decodes its header and claims strictly (base64url alphabet only, JSON
through ``schemas.strictjson``: nesting bounded, repeated keys refused) and checks the type of
every registered header parameter and claim: ``iss`` a string, ``aud`` a string or a list of
strings, ``exp``/``nbf``/``iat`` numbers of seconds a calendar can hold, and so on. Only then do
the signature check and the claim rules run (joserfc, authlib), on values of the types they
expect. Whatever is wrong is one ``MalformedToken``: the resource server answers 401 and the
token endpoint ``invalid_client``, and both charge the caller's failed-authentication bucket.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from schemas import strictjson

__all__ = ("MalformedToken", "Unverified", "unverified")

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_MAX_TOKEN = 16_384
"""Longest token read (a signed JWT with a handful of claims is well under 2 kB)."""

_Seconds = Annotated[float, msgspec.Meta(ge=0, le=253_402_300_799)]
"""Seconds since the epoch up to the last second of the year 9999 (``1e400`` decodes to infinity)."""
_Text = Annotated[str, msgspec.Meta(max_length=1024)]
_Texts = str | list[_Text]


class _Header(msgspec.Struct):
    """The JOSE header parameters this server reads (others are left to the JOSE library)."""

    alg: _Text
    kid: _Text | None = None
    typ: _Text | None = None


class _Claims(msgspec.Struct):
    """The registered claims and the claims this server reads, each of its type when present."""

    iss: _Text | None = None
    sub: _Text | None = None
    aud: _Texts | None = None
    exp: _Seconds | None = None
    nbf: _Seconds | None = None
    iat: _Seconds | None = None
    jti: _Text | None = None
    scope: _Texts | None = None
    scp: _Texts | None = None
    service_id: _Text | None = None
    client_id: _Text | None = None
    purpose_of_use: _Text | None = None
    requesting_practitioner: _Text | None = None


class MalformedToken(ValueError):
    """A token that is not a well-formed signed JWT."""


@dataclass(frozen=True, slots=True)
class Unverified:
    """A token's header and claims, well-formed but not yet verified."""

    header: dict[str, Any]
    claims: dict[str, Any]


def _segment(text: str, what: str) -> bytes:
    if not _SEGMENT.fullmatch(text):
        raise MalformedToken(f"the token's {what} is not base64url")
    try:
        return binascii.a2b_base64(text.translate(_URLSAFE) + "=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error:
        raise MalformedToken(f"the token's {what} is not base64url") from None


_URLSAFE = str.maketrans("-_", "+/")


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = strictjson.decode(raw)
    except strictjson.JsonError as exc:
        raise MalformedToken(f"the token's {what} is not acceptable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"the token's {what} is not a JSON object")
    return value


def unverified(token: str) -> Unverified:
    """The header and claims of a compact JWS, each checked for shape and types (not for trust).

    Raises:
        MalformedToken: not three base64url segments, header or claims not JSON objects, or a
            header parameter or claim of the wrong type.
    """
    if len(token) > _MAX_TOKEN or not token.isascii():
        raise MalformedToken("the token is not a signed JWT")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:  # an empty signature is alg "none": refused by name later
        raise MalformedToken("the token is not a signed JWT (three base64url parts)")
    _segment(parts[2], "signature")
    header = _object(_segment(parts[0], "header"), "header")
    claims = _object(_segment(parts[1], "claims"), "claims")
    try:
        msgspec.convert(header, _Header)
        msgspec.convert(claims, _Claims)
    except msgspec.ValidationError as exc:
        raise MalformedToken(f"the token is malformed: {exc}") from None
    return Unverified(header, claims)
