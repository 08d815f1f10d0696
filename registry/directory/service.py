"""Rules of the services directory: validation of what operators add."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from registry import errors
from registry.checks import check_service_id
from registry.outbound.egress import accept_url
from schemas.types import SearchStyle, ServiceKind, ServiceStatus

if TYPE_CHECKING:
    from registry.db.pool import Database
    from registry.directory.repository import ServiceRepository
    from registry.outbound.egress import AddressPolicy
    from schemas.services import Service

__all__ = ("DirectoryService", "check_base_url")


async def check_base_url(value: str, policy: AddressPolicy) -> str:
    """Validate a service's base URL: one this server may call (``registry.outbound.egress``: https, or http only
    on loopback or in dev mode; addresses allowed), without a query or fragment; strip a trailing slash."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise errors.InvalidInput(f"base URL {value!r} is not a URL") from None
    if parts.query or parts.fragment:
        raise errors.InvalidInput(f"base URL {value!r} must not carry a query or fragment")
    return (await accept_url(policy, value, "the base URL")).rstrip("/")


class DirectoryService:
    """Add, list, disable and find member services."""

    def __init__(self, db: Database, repository: ServiceRepository, *, policy: AddressPolicy) -> None:
        self._db = db
        self._repo = repository
        self._policy = policy

    async def add(
        self,
        *,
        service_id: str,
        kind: str,
        name: str,
        base_url: str,
        search_style: str = "ief",
        client_id: str | None = None,
        bearer_token_file: str | None = None,
        token_endpoint: str | None = None,
    ) -> tuple[Service, bool]:
        """Add a service, or change and re-enable an existing one.

        ``client_id`` (the ID that service gave this instance) or ``bearer_token_file`` says how this
        instance authenticates when it calls the service; at most one of them. ``token_endpoint``
        (with ``client_id`` only) is where to get tokens for it when that is not on its own origin.
        URLs are checked against the outbound address policy now, and again at every connection.
        """
        sid = check_service_id(service_id, "id")
        try:
            kind_value = ServiceKind(kind)
            style = SearchStyle(search_style)
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        if not name.strip() or len(name) > 200:
            raise errors.InvalidInput("a service name is 1 to 200 characters")
        if client_id is not None and bearer_token_file is not None:
            raise errors.InvalidInput("give a client ID or a bearer token file, not both")
        if client_id is not None and not (0 < len(client_id.strip()) <= 200):
            raise errors.InvalidInput("a client ID is 1 to 200 characters")
        if token_endpoint is not None and client_id is None:
            raise errors.InvalidInput("a token endpoint is for a service this instance has a client ID at")
        base = await check_base_url(base_url, self._policy)
        endpoint = await accept_url(self._policy, token_endpoint, "the token endpoint") if token_endpoint else None
        async with self._db.writer() as conn:
            return await self._repo.add(
                conn, service_id=sid, kind=kind_value, name=name.strip(), base_url=base, search_style=style,
                client_id=client_id.strip() if client_id else None, bearer_token_file=bearer_token_file,
                token_endpoint=endpoint,
            )  # fmt: skip

    async def list_all(self, status: str | None = None) -> list[Service]:
        """Every service, optionally only enabled or disabled ones."""
        async with self._db.reader() as conn:
            return await self._repo.list_all(conn, status)

    async def get(self, service_id: str) -> Service:
        """One service.

        Raises:
            NotFound: no such service.
        """
        async with self._db.reader() as conn:
            found = await self._repo.get(conn, service_id)
        if found is None:
            raise errors.NotFound("no such service")
        return found

    async def get_many(self, service_ids: list[str]) -> dict[str, Service]:
        """The services among ``service_ids``, by ID (unknown IDs are left out)."""
        if not service_ids:
            return {}
        async with self._db.reader() as conn:
            found = await self._repo.get_many(conn, service_ids)
        return {service.service_id: service for service in found}

    async def set_status(self, service_id: str, status: ServiceStatus) -> Service:
        """Enable or disable a service; records naming a disabled service can no longer be written."""
        sid = check_service_id(service_id, "id")
        async with self._db.writer() as conn:
            found = await self._repo.set_status(conn, sid, status)
        if found is None:
            raise errors.NotFound(f"no service {sid}")
        return found

    async def search(
        self,
        *,
        service_ids: list[str] | None,
        statuses: list[str] | None,
        name_patterns: list[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Service], int]:
        """A page of services matching the filters (None: any), and the total, for the FHIR Endpoint search."""
        async with self._db.reader() as conn:
            return await self._repo.search(
                conn, service_ids=service_ids, statuses=statuses, name_patterns=name_patterns,
                limit=limit, offset=offset,
            )  # fmt: skip
