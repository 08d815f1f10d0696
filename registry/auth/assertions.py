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
``/.well-known/jwks.json``. One assertion is signed per gateway asked, so the compact JWS is put
together here (RFC 7515 §7.1: the protected header, encoded once per key, and the claims, each
base64url, signed with ``cryptography``'s ECDSA P-256/SHA-256, the signature as ``r || s``): half
the CPU of a general JOSE library's ``encode`` (0.04 ms against 0.08 ms here). The tests and
``docs/gateways.md`` verify what it makes with joserfc.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, RSAKey

    from registry.auth.keys import KeyRing
    from registry.auth.requester import Requester

__all__ = ("HEADER", "LIFETIME", "TYPE", "RequesterAssertions")

HEADER = "IEF-Requester"
LIFETIME = 60
"""Seconds an assertion is valid (the issue's bound: at most 60)."""
TYPE = "ief-requester+jwt"
"""The JOSE ``typ`` of an assertion (so it is never mistaken for an access token)."""


_ECDSA = ec.ECDSA(hashes.SHA256())
_encoder = msgspec.json.Encoder()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class RequesterAssertions:
    """Signs one ``IEF-Requester`` assertion per gateway asked."""

    def __init__(self, keys: KeyRing, *, issuer: str) -> None:
        self._keys = keys
        self.issuer = issuer
        self._headers: dict[str, bytes] = {}

    def _header(self, key: ECKey | RSAKey) -> bytes:
        """The encoded protected header of ``key`` (made once per key)."""
        kid = str(key.kid)
        encoded = self._headers.get(kid)
        if encoded is None:
            if key.alg != "ES256" or not isinstance(key.private_key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"the requester key {kid} is not an ES256 key")
            encoded = self._headers[kid] = _b64(_encoder.encode({"alg": "ES256", "kid": kid, "typ": TYPE}))
        return encoded

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
        signing_input = self._header(key) + b"." + _b64(_encoder.encode(claims))
        private: Any = key.private_key
        r, s = decode_dss_signature(private.sign(signing_input, _ECDSA))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return (signing_input + b"." + _b64(signature)).decode("ascii")
