"""Standard Webhooks signatures (pure): ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

Signed content is ``{id}.{timestamp}.{body}`` over the exact bytes sent; each signature is
``v1,<base64 HMAC-SHA256>`` with the secret's key (``whsec_`` + base64 of 24 to 64 random bytes).
During a secret rotation both secrets sign, space-separated, so receivers can switch keys without
losing a notification. The id is the same on every retry of a notification (receivers dedupe on
it); the timestamp and signatures are made per attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ("PREFIX", "check_secret", "generate_secret", "signature", "webhook_headers")

PREFIX = "whsec_"
_MIN_BYTES = 24
_MAX_BYTES = 64
_NEW_BYTES = 32


def generate_secret() -> str:
    """A new random secret, ``whsec_`` + base64 of 32 bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_NEW_BYTES)).decode()


def check_secret(text: str) -> bytes:
    """The key of a secret.

    Raises:
        ValueError: not ``whsec_`` followed by base64 of 24 to 64 bytes.
    """
    if not text.startswith(PREFIX):
        raise ValueError("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(text[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is whsec_ followed by base64") from None
    if not _MIN_BYTES <= len(key) <= _MAX_BYTES:
        raise ValueError(f"a signing secret holds {_MIN_BYTES} to {_MAX_BYTES} random bytes, not {len(key)}")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a notification attempt."""
    digest = hmac.new(check_secret(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(keys: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every secret in ``keys``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, msg_id, timestamp, body) for key in keys),
    }
