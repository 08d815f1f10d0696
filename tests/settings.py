"""The settings of the test servers: one helper, so every server of the suite starts from the same ones."""

from __future__ import annotations

from typing import Any

from registry.config import AuthSettings, LogSettings, OutboundSettings, Settings
from tests.factories import LOOPBACK_NETWORKS

__all__ = ("test_settings",)

_QUIET_AUTH = AuthSettings(
    client_cache_seconds=0,
    key_refresh_seconds=0,
    rate_per_second=10_000,
    rate_burst=10_000,
    failure_rate_per_second=10_000,
    failure_burst=10_000,
)
"""Client state and keys re-read on every use; rates out of the way (rate limits have tests of their own, on
servers of their own: the shared servers serve every test from one operator client and one address)."""


_LOOPBACK_PEERS = OutboundSettings(allowed_networks=LOOPBACK_NETWORKS)
"""The gateways, peers and token authorities of the tests run on loopback, which the outbound policy allows
only when told."""


def test_settings(**sections: Any) -> Settings:
    """Settings of a test server: no access log, quiet authentication, outbound calls to loopback allowed, then
    the given sections (``broker=…``)."""
    return Settings(**{"log": LogSettings(access=False), "auth": _QUIET_AUTH, "outbound": _LOOPBACK_PEERS, **sections})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
