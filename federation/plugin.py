"""How federation joins the server: the resolver that follows ``registry`` records (no routes of its own).

The records service takes it as its ``Referrals`` (``registry.records.service``); the server's
lifespan opens it with the directory (``Members``) and this instance's outbound credentials.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from federation.backoff import FailureCache
from federation.client import PeerClient
from federation.resolver import Resolver
from registry.feature import FeaturePlugin
from registry.outbound.egress import outbound_policy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from federation.client import Credentials
    from registry.feature import Members

__all__ = ("FederationPlugin",)


class FederationPlugin(FeaturePlugin):
    """Registry-to-registry look-ups (DESIGN §5)."""

    @contextlib.asynccontextmanager
    async def open(self, *, service_id: str, directory: Members, credentials: Credentials) -> AsyncIterator[Resolver]:
        """The resolver of one process (its peer connections closed at the end, its negative cache in memory)."""
        settings = self.settings.federation
        peers = PeerClient(
            credentials,
            max_bytes=settings.max_response_bytes,
            max_connections=settings.max_connections,
            policy=outbound_policy(self.settings),
        )
        try:
            yield Resolver(
                origin=service_id,
                directory=directory,
                client=peers,
                settings=settings,
                failures=FailureCache(settings.negative_cache_seconds),
            )
        finally:
            await peers.close()
