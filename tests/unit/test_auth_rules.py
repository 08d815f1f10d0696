"""Pure auth rules: token buckets, which scopes a client may hold, secret hashes, key URLs, key material."""

from __future__ import annotations

import pytest
from joserfc.jwk import OctKey

from registry import errors
from registry.auth.clients import KeyMaterial, hash_secret, public_key_from_pem, verify_secret
from registry.auth.ratelimit import RateLimiter
from registry.auth.scopes import is_scope, may_hold
from tests.factories import make_rsa_key


def test_bucket_allows_the_burst_then_refuses_with_retry_after() -> None:
    """A bucket lets `burst` requests through at once, then refuses with a whole-second Retry-After of at least 1."""
    limiter = RateLimiter(rate=0.5, burst=2, message="slow down")
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(errors.RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 2
    limiter.take("b")  # another key has its own bucket


def test_bucket_override_keeps_the_burst_ratio() -> None:
    """A per-key rate gets a burst in the same ratio to it as the default burst to the default rate."""
    limiter = RateLimiter(rate=10, burst=20, message="slow down")
    for _ in range(2):
        limiter.take("slow", rate=1)
    with pytest.raises(errors.RateLimited):
        limiter.take("slow", rate=1)


@pytest.mark.parametrize(
    ("registered", "asked", "allowed"),
    [
        ({"system/Basic.cu", "system/Basic.rs"}, "system/Basic.rs", True),
        ({"system/Basic.rs"}, "system/Basic.read", True),
        ({"system/*.rs"}, "system/Endpoint.rs", True),
        ({"system/Basic.rs"}, "system/Basic.cu", False),
        ({"system/Basic.rs"}, "admin", False),
        ({"admin"}, "system/AuditEvent.rs", True),
        ({"system/Basic.rs"}, "openid", False),
    ],
)
def test_may_hold(registered: set[str], asked: str, allowed: bool) -> None:
    """A client may be granted a scope it registered, or one its registered scopes already cover."""
    assert may_hold(frozenset(registered), asked) is allowed


@pytest.mark.parametrize(
    ("scope", "known"),
    [
        ("admin", True),
        ("system/Basic.cruds", True),
        ("system/*.read", True),
        ("system/Basic.x", False),
        ("root", False),
    ],
)
def test_is_scope(scope: str, known: bool) -> None:
    """Only admin and well-formed system/ scopes are scopes this server understands."""
    assert is_scope(scope) is known


def test_secret_hash_is_salted_and_verifies() -> None:
    """The same secret hashes differently each time; only the right secret verifies."""
    first, second = hash_secret("s3cret"), hash_secret("s3cret")
    assert first != second
    assert verify_secret("s3cret", first)
    assert not verify_secret("s3cret!", first)
    assert not verify_secret("s3cret", "plain$text")


def test_key_material_keeps_only_public_halves() -> None:
    """A JWKS or PEM given with private parts is stored as public keys only; symmetric keys are refused."""
    key = make_rsa_key()
    jwks = KeyMaterial.jwks({"keys": [key.as_dict(private=True)]})
    assert "d" not in jwks["keys"][0]
    pem = KeyMaterial.public_key(key.as_pem(private=True).decode())
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_from_pem(pem).thumbprint() == key.thumbprint()
    with pytest.raises(errors.InvalidInput):
        KeyMaterial.jwks({"keys": [OctKey.generate_key(256).as_dict(private=True)]})
    with pytest.raises(errors.InvalidInput):
        KeyMaterial.public_key("not a key")
