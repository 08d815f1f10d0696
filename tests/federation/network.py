"""Several real registries, each on its own database, that trust each other as operators would set it up.

``registries(...)`` starts N servers of ours; ``trust(caller, callee)`` does what the two operators
do (DESIGN §8): at the callee, ``clients add`` for the caller (bound to its service ID, keys from
its JWKS URL); at the caller, ``services add --kind registry --client-id …`` for the callee. It
calls the same services the CLI calls (``tests/federation/test_server_trust.py`` runs the CLI
itself), because a subprocess per step would cost seconds per pair.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from registry.db.queries import load_queries
from registry.directory.repository import ServiceRepository
from registry.directory.service import DirectoryService
from registry.outbound.egress import outbound_policy
from tests.audit_ledger import AuditLedger
from tests.clients import client_factory
from tests.factories import make_service_id
from tests.server import RunningServer, running_server

if TYPE_CHECKING:
    from registry.config import Settings
    from tests.pg import TestCluster

__all__ = ("Network", "directory", "peer_audit_rows", "registries", "trust")

LOOKUP = "system/Basic.rs"


def directory(server: RunningServer) -> DirectoryService:
    """The services directory of a running server (the one ``ief-registry services`` edits)."""
    return DirectoryService(server.database, ServiceRepository(load_queries()), policy=outbound_policy(server.settings))


async def trust(caller: RunningServer, callee: RunningServer, *, name: str) -> str:
    """Let ``caller`` look records up at ``callee``; return the client ID the callee gave it."""
    client_id, _ = await callee.add_client(
        caller.service_id, LOOKUP, name=f"Peer {name}", jwks_url=f"{caller.base_url}/.well-known/jwks.json"
    )
    await directory(caller).add(
        service_id=callee.service_id, kind="registry", name=name, base_url=callee.base_url, client_id=client_id
    )
    return client_id


async def peer_audit_rows(server: RunningServer, peer_request_id: str) -> int:
    """How many audit rows ``server`` wrote for requests that carried ``IEF-Request-Id: peer_request_id``."""
    return await server.count("SELECT count(*) FROM audit_events WHERE peer_request_id = $1", peer_request_id)


class Network:
    """Running registries by name, and clients for each that the audit ledger watches."""

    def __init__(self, servers: dict[str, RunningServer]) -> None:
        self.servers = servers
        self.ledgers = {name: AuditLedger(server.audited) for name, server in servers.items()}
        self._admin: dict[str, dict[str, str]] = {}

    def __getitem__(self, name: str) -> RunningServer:
        return self.servers[name]

    def name_of(self, service_id: str) -> str:
        """The name of the registry with this service ID."""
        return next(name for name, server in self.servers.items() if server.service_id == service_id)

    @contextlib.asynccontextmanager
    async def client(self, name: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
        """An admin client of one registry: FHIR answers parsed with R4B, requests noted by its audit ledger."""
        if name not in self._admin:
            self._admin[name] = await self.servers[name].headers("admin")
        async with client_factory(self.servers[name].base_url, self._admin[name], self.ledgers[name])(
            **options
        ) as http:
            yield http

    async def check_audit(self) -> None:
        """Every patient-linked request the clients made left exactly one audit row at its registry."""
        for name, ledger in self.ledgers.items():
            await ledger.check(self.servers[name].database)

    async def put(self, name: str, ihi: str, service_id: str, type_: str = "record", status: str = "active") -> None:
        """Register a record at one registry (as its operator)."""
        async with self.client(name) as http:
            response = await http.put(f"/registry/records/{ihi}/{service_id}", json={"status": status, "type": type_})
        assert response.status_code in (200, 201), response.text

    async def gateway(self, name: str, label: str) -> str:
        """A new gateway in one registry's directory; returns its service ID."""
        service_id = make_service_id()
        await self.servers[name].add_service(
            service_id, name=f"{label} imaging", base_url=f"https://{label.lower()}.gateway.test/fhir"
        )
        return service_id


@contextlib.asynccontextmanager
async def registries(template: TestCluster, settings: Sequence[tuple[str, Settings]]) -> AsyncIterator[Network]:
    """Start one registry per ``(name, settings)``, each on a new database, and wire trust both ways between all."""
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, RunningServer] = {}
        for name, server_settings in settings:
            database_url = await template.new_database()
            servers[name] = await stack.enter_async_context(
                running_server(server_settings, database_url, make_service_id())
            )
        for (_, caller), (name, callee) in itertools.permutations(servers.items(), 2):
            await trust(caller, callee, name=f"Registry {name}")
        yield Network(servers)
