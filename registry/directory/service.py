"""Rules of the services directory: validation of what operators add."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from registry import errors
from registry.checks import check_service_id
from registry.directory.repository import ServiceEntry
from registry.outbound.egress import accept_url
from schemas.services import Organisation
from schemas.types import InvalidValueError, Jurisdiction, SearchStyle, ServiceKind, ServiceStatus, parse_hpio

if TYPE_CHECKING:
    from registry.db.pool import Database
    from registry.directory.repository import ServiceRepository
    from registry.outbound.egress import AddressPolicy
    from schemas.services import Service

__all__ = ("DirectoryService", "check_base_url", "check_organisation")

# Full matches over printable ASCII only (no spaces, no @ but the one), once surrounding spaces and tabs
# are trimmed: a newline, a control character or a non-ASCII look-alike is refused like any other
# invalid value.
_EMAIL = re.compile(r"[\x21-\x3f\x41-\x7e]{1,64}@[\x21-\x2d\x2f-\x3f\x41-\x7e]+(?:\.[\x21-\x2d\x2f-\x3f\x41-\x7e]+)+")
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{2,38}")


def _absolute_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL of printable ASCII with a host."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _invalid(message: str, where: str) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, where)])


def check_organisation(o: Organisation) -> Organisation:
    """Validate what the directory says of a service's organisation; return it with its values tidied.

    Raises:
        InvalidInput: an invalid HPI-O, jurisdiction, email address, phone number, URL or fallback text.
    """
    hpio = None
    if o.hpio is not None:
        try:
            hpio = parse_hpio(o.hpio)
        except InvalidValueError as exc:
            raise _invalid(f"invalid HPI-O: {exc}", "hpio") from None
    if o.jurisdiction is not None and o.jurisdiction not in Jurisdiction._value2member_map_:
        raise _invalid(f"unknown jurisdiction {o.jurisdiction!r}; use {', '.join(Jurisdiction)}", "jurisdiction")
    email = o.contact_email.strip(" \t") if o.contact_email else None
    if email is not None and (len(email) > 254 or not _EMAIL.fullmatch(email)):
        raise _invalid(f"{email!r} is not an email address", "contactEmail")
    phone = o.contact_phone.strip(" \t") if o.contact_phone else None
    if phone is not None and not _PHONE.fullmatch(phone):
        message = f"{phone!r} is not a phone number (digits, spaces, brackets, dashes, a leading +)"
        raise _invalid(message, "contactPhone")
    url = o.capability_statement_url
    if url is not None:
        url = url.strip(" \t")
        if not _absolute_http_url(url):
            message = f"capability statement URL {url!r} must be an absolute http(s) URL"
            raise _invalid(message, "capabilityStatementUrl")
    fallback = o.fallback.strip() if o.fallback else None
    if fallback is not None and len(fallback) > 2000:
        raise _invalid("the fallback is at most 2000 characters", "fallback")
    return Organisation(
        hpio=hpio, jurisdiction=o.jurisdiction, contact_email=email, contact_phone=phone,
        capability_statement_url=url, fallback=fallback or None,
    )  # fmt: skip


def _retired(service_id: str) -> errors.Conflict:
    return errors.Conflict(
        f"service {service_id} is retired: its records are archived and it is not routed or written again",
        code=errors.ErrorCode.SERVICE_RETIRED,
    )


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
        status: ServiceStatus = ServiceStatus.ENABLED,
        organisation: Organisation = Organisation(),  # noqa: B008 - an immutable default
        token_endpoint: str | None = None,
    ) -> tuple[Service, bool]:
        """Add a service, or change and re-enable (``status``: or disable) an existing one (the operator's
        command line, as the schema's owner).

        ``client_id`` (the ID that service gave this instance) or ``bearer_token_file`` says how this
        instance authenticates when it calls the service; at most one of them. ``token_endpoint``
        (with ``client_id`` only) is where to get tokens for it when that is not on its own origin.
        URLs are checked against the outbound address policy now, and again at every connection.
        ``organisation`` describes who runs it (HPI-O, jurisdiction, contact, capability statement,
        fallback).

        Raises:
            InvalidInput: a field is invalid, or a URL is refused by the outbound address policy.
            Conflict: the service is retired.
        """
        if client_id is not None and bearer_token_file is not None:
            raise errors.InvalidInput("give a client ID or a bearer token file, not both")
        if token_endpoint is not None and client_id is None:
            raise errors.InvalidInput("a token endpoint is for a service this instance has a client ID at")
        entry = await self._checked(service_id, kind, name, base_url, search_style, client_id, status, organisation)
        endpoint = await accept_url(self._policy, token_endpoint, "the token endpoint") if token_endpoint else None
        async with self._db.writer() as conn:
            current = await self._repo.get(conn, entry.service_id)
            if current is not None and current.status is ServiceStatus.RETIRED:
                raise _retired(entry.service_id)
            return await self._repo.add(conn, entry, bearer_token_file=bearer_token_file, token_endpoint=endpoint)

    async def put_entry(
        self,
        *,
        service_id: str,
        kind: str,
        name: str,
        base_url: str,
        search_style: str,
        client_id: str | None,
        status: ServiceStatus,
        organisation: Organisation,
    ) -> tuple[Service, bool]:
        """Add or change a service from the FHIR API (the operator's token, through the server's database role):
        the validation of ``add``; the client ID kept unless one is given; the token endpoint and bearer token
        file only ever set by ``add`` (``directory_put()`` of migration 0009 keeps them).

        Raises:
            InvalidInput: a field is invalid, or a URL is refused by the outbound address policy.
            Conflict: the service is retired.
        """
        entry = await self._checked(service_id, kind, name, base_url, search_style, client_id, status, organisation)
        async with self._db.writer() as conn:
            written = await self._repo.put_entry(conn, entry)
        if written is None:
            raise _retired(entry.service_id)
        return written

    async def _checked(
        self,
        service_id: str,
        kind: str,
        name: str,
        base_url: str,
        search_style: str,
        client_id: str | None,
        status: ServiceStatus,
        organisation: Organisation,
    ) -> ServiceEntry:
        """A directory entry with every field validated and tidied (the base URL against the address policy)."""
        sid = check_service_id(service_id, "id")
        try:
            kind_value = ServiceKind(kind)
            style = SearchStyle(search_style)
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        if not name.strip() or len(name) > 200:
            raise errors.InvalidInput("a service name is 1 to 200 characters")
        if client_id is not None and not (0 < len(client_id.strip()) <= 200):
            raise errors.InvalidInput("a client ID is 1 to 200 characters")
        if status is ServiceStatus.RETIRED:
            raise errors.InvalidInput("a service is retired by `services retire`, which archives its records")
        checked = check_organisation(organisation)
        base = await check_base_url(base_url, self._policy)
        return ServiceEntry(
            sid, kind_value, name.strip(), base, style, client_id.strip() if client_id else None, status, checked
        )

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
        """Enable, disable or retire a service; records naming a service that is not enabled are not routed
        and can no longer be written.

        Raises:
            NotFound: no such service.
            Conflict: the service is retired (it stays so).
        """
        sid = check_service_id(service_id, "id")
        async with self._db.writer() as conn:
            found = await self._repo.set_status(conn, sid, status)
            if found is None and await self._repo.get(conn, sid) is not None:
                raise _retired(sid)
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
        hpios: list[str] | None = None,
    ) -> tuple[list[Service], int]:
        """A page of services matching the filters (None: any), and the total, for the FHIR Endpoint and
        Organization searches."""
        async with self._db.reader() as conn:
            return await self._repo.search(
                conn, service_ids=service_ids, statuses=statuses, name_patterns=name_patterns,
                limit=limit, offset=offset, hpios=hpios,
            )  # fmt: skip
