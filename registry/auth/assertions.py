"""``IEF-Requester``: who the broker is asking a gateway for, as a short-lived JWT signed by this registry.

The broker calls gateways with its own credentials (``outbound.py``); this assertion rides beside
them so a gateway can tell which consumer, clinician and purpose it is answering and decide for
itself (DESIGN §12, ``docs/gateways.md``). Claims:

- ``iss`` this registry (the built-in issuer's name), ``aud`` the gateway's FHIR base URL,
  ``iat``, ``exp`` (``LIFETIME`` seconds later), ``jti`` (unique per assertion);
- ``sub`` the consumer's client ID and ``client_service`` the service it is bound to;
- ``purpose_of_use`` (a v3 PurposeOfUse code) and ``act: {"sub": <HPI-I>}`` when stated;
- ``ihi`` the patient searched for.

Signed ES256 with the ``requester`` key (``keys.py``), whose public half and ``kid`` are in
``/.well-known/jwks.json``.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from joserfc import jwt

if TYPE_CHECKING:
    from registry.auth.keys import KeyRing
    from registry.auth.requester import Requester

__all__ = ("HEADER", "LIFETIME", "TYPE", "RequesterAssertions")

HEADER = "IEF-Requester"
LIFETIME = 60
"""Seconds an assertion is valid (the issue's bound: at most 60)."""
TYPE = "ief-requester+jwt"
"""The JOSE ``typ`` of an assertion (so it is never mistaken for an access token)."""


class RequesterAssertions:
    """Signs one ``IEF-Requester`` assertion per gateway asked."""

    def __init__(self, keys: KeyRing, *, issuer: str) -> None:
        self._keys = keys
        self.issuer = issuer

    async def sign(self, *, audience: str, requester: Requester, ihi: str) -> str:
        """The assertion for a search of ``ihi`` at the gateway whose FHIR base is ``audience``."""
        keys = await self._keys.fresh()
        key = keys.requester
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME,
            "jti": uuid.uuid4().hex,
            "sub": requester.client_id,
            "client_service": requester.service_id,
            "ihi": ihi,
        }
        if requester.purpose is not None:
            claims["purpose_of_use"] = requester.purpose
        if requester.practitioner is not None:
            claims["act"] = {"sub": requester.practitioner}
        header = {"alg": str(key.alg), "kid": key.kid, "typ": TYPE}
        return jwt.encode(header, claims, key, algorithms=[str(key.alg)])
