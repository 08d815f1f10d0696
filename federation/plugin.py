"""How federation joins the server: the resolver that follows ``registry`` records (no routes of its own).

The records service takes it as its ``Referrals`` (``registry.records.service``); the server's
lifespan opens it with the directory (``Members``) and this instance's outbound credentials.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from federation.backoff import FailureCache
from federation.client import PeerClient
from federation.publisher import PublicationRepository, Publisher
from federation.resolver import Resolver
from registry.feature import FeaturePlugin
from registry.outbound.egress import outbound_policy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from federation.client import Credentials
    from registry.db.pool import Database
    from registry.db.queries import Queries
    from registry.feature import Members

__all__ = ("FederationPlugin",)


class FederationPlugin(FeaturePlugin):
    """Registry-to-registry look-ups (DESIGN §5)."""

    @contextlib.asynccontextmanager
    async def open(
        self,
        *,
        service_id: str,
        directory: Members,
        credentials: Credentials,
        db: Database | None = None,
        queries: Queries | None = None,
    ) -> AsyncIterator[Resolver]:
        """The resolver of one process (its peer connections closed at the end, its negative cache in memory),
        and the upstream publisher when ``federation.publisher`` is on and a database is given."""
        settings = self.settings.federation
        peers = PeerClient(
            credentials,
            max_bytes=settings.max_response_bytes,
            max_connections=settings.max_connections,
            policy=outbound_policy(self.settings),
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(peers.close)
            if settings.publisher and db is not None and queries is not None:
                await stack.enter_async_context(
                    self.publishing(db=db, queries=queries, service_id=service_id, directory=directory,
                                    credentials=credentials)
                )  # fmt: skip
            yield Resolver(
                origin=service_id,
                directory=directory,
                client=peers,
                settings=settings,
                failures=FailureCache(settings.negative_cache_seconds),
            )

    @contextlib.asynccontextmanager
    async def publishing(
        self, *, db: Database, queries: Queries, service_id: str, directory: Members, credentials: Credentials
    ) -> AsyncIterator[Publisher]:
        """A running upstream publisher (stopped at the end): inside ``serve``, or in ``ief-registry worker``."""
        publisher = Publisher(
            db, PublicationRepository(queries), self.settings.federation, origin=service_id, directory=directory,
            credentials=credentials, policy=outbound_policy(self.settings),
        )  # fmt: skip
        await publisher.start()
        try:
            yield publisher
        finally:
            await publisher.stop()
