"""Builders of valid (and deliberately invalid) test values."""

from __future__ import annotations

import functools
import random
import uuid
from datetime import UTC, datetime

from joserfc.jwk import RSAKey

from schemas.audit import AuditEntry
from schemas.types import IHI_PREFIX, luhn_valid

__all__ = (
    "IHI_SYSTEM",
    "LOOPBACK_NETWORKS",
    "make_audit_entry",
    "make_hpii",
    "make_ihi",
    "make_rsa_key",
    "make_service_id",
    "with_bad_check_digit",
)

IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
"""What a test server allows its outbound calls to reach (``IEF_OUTBOUND_ALLOWED_NETWORKS``): the gateways,
peers and key servers of the tests all run on loopback, which the address policy refuses by default."""
_rng = random.Random()


def make_ihi() -> str:
    """A random IHI with a valid Luhn check digit."""
    body = IHI_PREFIX + "".join(str(_rng.randrange(10)) for _ in range(9))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def make_hpii() -> str:
    """A random HPI-I (a clinician's identifier: 800361, Luhn) with a valid check digit."""
    body = "800361" + "".join(str(_rng.randrange(10)) for _ in range(9))
    return next(body + check for check in "0123456789" if luhn_valid(body + check))


def with_bad_check_digit(ihi: str) -> str:
    """The same IHI with a wrong check digit."""
    return ihi[:-1] + str((int(ihi[-1]) + 1) % 10)


def make_service_id() -> str:
    """A random service ID (a UUID, canonical lower case)."""
    return str(uuid.uuid4())


@functools.cache
def make_rsa_key(alg: str = "RS384", kid: str = "test-key", *, holder: str = "a test client") -> RSAKey:
    """A private RSA key with its ``kid`` and ``alg`` set, made once per ``kid``, ``alg`` and ``holder`` in a session
    (generating one costs about 60 ms): a test that needs a key of its own asks for a ``kid`` of its own, or for
    another ``holder`` when the ``kid`` must be the same (an impostor's key)."""
    key = RSAKey.generate_key(2048, private=True)
    return RSAKey.import_key(key.as_dict(private=True), parameters={"kid": kid, "alg": alg, "use": "sig"})


def make_audit_entry(request_id: str | None = None, *, patients: tuple[str, ...] = ()) -> AuditEntry:
    """An audit row of an anonymous successful record look-up."""
    return AuditEntry(
        recorded=datetime.now(UTC),
        request_id=request_id or uuid.uuid4().hex,
        peer_request_id=None,
        interaction="search-type",
        action="E",
        outcome=0,
        status=200,
        detail=None,
        method="GET",
        path="/registry/records/" + (patients[0] if patients else "x"),
        query="",
        client_id=None,
        client_service=None,
        client_address="127.0.0.1",
        token_id=None,
        observer=make_service_id(),
        patients=patients,
    )
