"""The outbound client of federation: one native look-up at a peer registry, bounded in time and size.

``PeerClient.records(peer, ihi, statuses, timeout=…, request_id=…)`` sends
``GET {peer base URL}/registry/records/{ihi}?follow=false&status=…`` with a token this registry
got from the peer (``registry.auth.outbound``: client credentials with ``private_key_jwt``, cached
until shortly before expiry) and ``IEF-Request-Id`` (this look-up's request ID, for the peer's
audit). The answer is read as a stream and dropped past ``max_bytes``; it is validated with
msgspec (unknown fields tolerated), and records that are not valid (a bad service ID, an unknown
status, another IHI, no usable directory entry) are dropped one by one and named.

Every failure is a ``PeerError`` whose ``reason`` is the ``unresolved`` code:

PeerError                   the peer gave no usable answer
├── PeerTimeout             timeout            no answer within the time given
├── PeerUnreachable         unreachable        no connection, or it broke
│   └── PeerRefusedAddress  unreachable        its URL or address is refused by the outbound policy
├── PeerRefused             unauthorized       no token could be obtained from it, or it refused ours (401, 403)
├── PeerErrorResponse       error-response     any other status than 200
├── PeerTooLarge            too-large          the answer is over the size limit
└── PeerInvalidResponse     invalid-response   not JSON, not a record list, or for another IHI
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from registry import __version__
from registry.errors import OutboundAuthError
from registry.outbound.egress import AddressRefused, new_client, refusal
from registry.outbound.reader import TooLarge, read_capped, refuse_declared
from schemas import strictjson
from schemas.privacy import parse_labels
from schemas.records import PeerRecord, PeerRecordList, Record, ServiceRef
from schemas.types import (
    InvalidValueError,
    RecordStatus,
    RecordType,
    SearchStyle,
    ServiceKind,
    UnresolvedReason,
    parse_service_id,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from registry.auth.outbound import OutboundTarget
    from registry.auth.requester import Requester
    from registry.outbound.egress import AddressPolicy

__all__ = (
    "LOOKUP_SCOPES",
    "PEER_REQUEST_ID",
    "Credentials",
    "PeerAnswer",
    "PeerClient",
    "PeerError",
    "PeerErrorResponse",
    "PeerInvalidResponse",
    "PeerRefused",
    "PeerRefusedAddress",
    "PeerTimeout",
    "PeerTooLarge",
    "PeerUnreachable",
    "records_url",
)

LOOKUP_SCOPES = ("system/Basic.rs",)
"""What this registry asks a peer's token endpoint for: the scope of a record look-up."""

PEER_REQUEST_ID = "IEF-Request-Id"
"""The header that carries this look-up's request ID to the peer (recorded in the peer's audit)."""
PURPOSE_HEADER = "IEF-Purpose-Of-Use"
"""The header that carries the consumer's purpose of use to the peer, for the peer's own decision."""
ON_BEHALF_OF_HEADER = "IEF-On-Behalf-Of"
"""The header that carries the requesting practitioner's HPI-I to the peer."""

_decoder = msgspec.json.Decoder(PeerRecordList)
_MAX_NAME = 200


class PeerError(Exception):
    """A peer registry gave no usable answer; ``reason`` is the code reported in ``unresolved``."""

    reason: UnresolvedReason = UnresolvedReason.ERROR_RESPONSE

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PeerTimeout(PeerError):
    """No answer within the time the peer was given."""

    reason = UnresolvedReason.TIMEOUT


class PeerUnreachable(PeerError):
    """No connection could be made, or it broke before the answer was complete."""

    reason = UnresolvedReason.UNREACHABLE


class PeerRefusedAddress(PeerUnreachable):
    """Its URL, or an address it resolves to, is not one this registry may call (``registry.outbound.egress``)."""


class PeerRefused(PeerError):
    """No token could be obtained from the peer, or it refused this registry's token."""

    reason = UnresolvedReason.UNAUTHORIZED


class PeerErrorResponse(PeerError):
    """The peer answered with another status than 200."""

    reason = UnresolvedReason.ERROR_RESPONSE


class PeerTooLarge(PeerError):
    """The answer is larger than the response size limit."""

    reason = UnresolvedReason.TOO_LARGE


class PeerInvalidResponse(PeerError):
    """The answer is not JSON, not a record list, or a list for another IHI."""

    reason = UnresolvedReason.INVALID_RESPONSE


class Credentials(Protocol):
    """How the client gets and drops tokens for a peer (``registry.auth.outbound.OutboundCredentials``)."""

    async def authorization(self, service: OutboundTarget, scopes: Iterable[str]) -> str: ...

    def forget(self, service: OutboundTarget) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    """A peer's valid records (each with its directory entry there), and why any others were dropped."""

    records: list[Record]
    dropped: list[str]
    withheld: bool = False


def records_url(base_url: str, ihi: str) -> str:
    """The native look-up URL of a registry whose base URL (the root of its API) is ``base_url``."""
    return f"{base_url.rstrip('/')}/registry/records/{quote(ihi, safe='')}"


class PeerClient:
    """Asks peer registries for a patient's records; one HTTP connection pool for every look-up of a process."""

    def __init__(
        self, credentials: Credentials, *, max_bytes: int, max_connections: int, policy: AddressPolicy
    ) -> None:
        self._credentials = credentials
        self._max_bytes = max_bytes
        # Each request gets its own timeout (what is left of its look-up's deadline); these are the ceilings.
        self._http = new_client(
            policy,
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(max_connections, 20)),
            headers={"Accept": "application/json", "User-Agent": f"ief-registry/{__version__}"},
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def records(
        self,
        peer: OutboundTarget,
        ihi: str,
        statuses: list[str],
        *,
        within: float,
        request_id: str,
        requester: Requester | None = None,
    ) -> PeerAnswer:
        """The peer's records of ``ihi`` with ``statuses`` (it is asked not to follow its own referrals);
        the consumer's purpose of use and practitioner go with the question, for the peer's own decision.

        Raises:
            PeerError: no usable answer within ``within`` seconds (the subclass says why).
        """
        try:
            async with asyncio.timeout(within):
                return await self._ask(peer, ihi, statuses, within, _stated(request_id, requester))
        except TimeoutError:
            raise PeerTimeout(f"no answer within {within:.2f} s") from None

    async def _ask(
        self, peer: OutboundTarget, ihi: str, statuses: list[str], seconds: float, stated: dict[str, str]
    ) -> PeerAnswer:
        url = records_url(peer.base_url, ihi)
        params = httpx.QueryParams([("follow", "false"), *(("status", status) for status in statuses)])
        status, body = await self._get(peer, url, params, stated, seconds)
        if status == 401:  # perhaps a cached token it no longer takes: drop it and try once more with a new one
            self._credentials.forget(peer)
            status, body = await self._get(peer, url, params, stated, seconds)
        if status in (401, 403):
            raise PeerRefused(f"it refused this registry's token ({status})")
        if status != 200:
            raise PeerErrorResponse(f"it answered {status}")
        try:
            strictjson.check_depth(body, strictjson.REMOTE_MAX_DEPTH)
            answer = _decoder.decode(body)
        except strictjson.TooDeep:
            raise PeerInvalidResponse("its answer is nested too deep") from None
        except msgspec.ValidationError as exc:
            raise PeerInvalidResponse(f"its answer is not a record list: {exc}") from None
        except msgspec.DecodeError:
            raise PeerInvalidResponse("its answer is not JSON") from None
        if answer.ihi != ihi:
            raise PeerInvalidResponse("it answered for another IHI")
        found = validated(answer.records, ihi)
        return PeerAnswer(found.records, found.dropped, withheld=answer.withheld)

    async def _get(
        self, peer: OutboundTarget, url: str, params: httpx.QueryParams, stated: dict[str, str], seconds: float
    ) -> tuple[int, bytes]:
        """Status and body (read only for a 200, at most ``max_bytes``) of one authenticated GET."""
        try:
            authorization = await self._credentials.authorization(peer, LOOKUP_SCOPES)
        except OutboundAuthError as exc:
            raise PeerRefused(f"no token from it: {exc.message}") from None  # words for consumers (outbound.py)
        headers = {"Authorization": authorization, **stated}
        try:
            async with self._http.stream("GET", url, params=params, headers=headers, timeout=seconds) as response:
                if response.status_code != 200:
                    return response.status_code, b""
                refuse_declared(response.headers.get("content-length"), self._max_bytes)
                return 200, await read_capped(response.aiter_bytes(), self._max_bytes)
        except TooLarge as exc:
            if exc.declared is not None:
                raise PeerTooLarge(
                    f"its answer of {exc.declared} bytes is over the limit of {self._max_bytes}"
                ) from None
            raise PeerTooLarge(f"its answer is over the limit of {self._max_bytes} bytes") from None
        except httpx.TimeoutException:
            raise PeerTimeout(f"no answer within {seconds:.2f} s") from None
        except httpx.ConnectError as exc:
            refused = refusal(exc)
            if isinstance(refused, AddressRefused):
                raise PeerRefusedAddress(f"not called: {refused}") from None
            raise PeerUnreachable(f"no connection ({_cause(exc)})") from None
        except httpx.RemoteProtocolError:
            raise PeerInvalidResponse("it does not speak HTTP properly") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise PeerUnreachable(f"the connection failed ({type(exc).__name__})") from None


def _stated(request_id: str, requester: Requester | None) -> dict[str, str]:
    """The headers that say whose look-up this is: its request ID, the consumer's purpose and practitioner."""
    headers = {PEER_REQUEST_ID: request_id}
    if requester is not None and requester.purpose is not None:
        headers[PURPOSE_HEADER] = requester.purpose
    if requester is not None and requester.practitioner is not None:
        headers[ON_BEHALF_OF_HEADER] = requester.practitioner
    return headers


def _cause(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def validated(records: list[PeerRecord], ihi: str) -> PeerAnswer:
    """The valid records of a peer's answer for ``ihi``; each invalid one is dropped and named."""
    kept: list[Record] = []
    dropped: list[str] = []
    for number, peer_record in enumerate(records):
        try:
            kept.append(_record(peer_record, ihi))
        except InvalidValueError as exc:
            dropped.append(f"record {number}: {exc}")
    return PeerAnswer(kept, dropped)


def _record(peer_record: PeerRecord, ihi: str) -> Record:
    """A peer's record as ours, with the service's directory entry at the peer.

    Raises:
        InvalidValueError: what makes the record unusable.
    """
    if peer_record.ihi is not None and peer_record.ihi != ihi:
        raise InvalidValueError("it is a record of another IHI")
    service_id = parse_service_id(peer_record.service_id)
    try:
        status, type_ = RecordStatus(peer_record.status), RecordType(peer_record.type)
    except ValueError:
        wrong = f"status {peer_record.status[:40]!r} or type {peer_record.type[:40]!r}"
        raise InvalidValueError(f"unknown {wrong}") from None
    return Record(
        ihi=ihi,
        service_id=service_id,
        status=status,
        type=type_,
        last_updated=peer_record.last_updated,
        service=_service(peer_record, service_id),
        security_labels=list(parse_labels(peer_record.security_labels)) or None
        if peer_record.security_labels
        else None,
    )


def _service(peer_record: PeerRecord, service_id: str) -> ServiceRef:
    entry = peer_record.service
    if entry is None:
        raise InvalidValueError(f"it gives no directory entry for service {service_id}")
    try:
        kind, style = ServiceKind(entry.kind), SearchStyle(entry.search_style)
    except ValueError:
        raise InvalidValueError(f"service {service_id} has an unknown kind or search style") from None
    try:
        parts = urlsplit(entry.base_url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment
    except ValueError:  # urlsplit refuses some malformed hosts ("http://[::1")
        usable = False
    if not usable:
        raise InvalidValueError(f"service {service_id} has no usable base URL")
    name = entry.name.strip()
    if not name or len(name) > _MAX_NAME:
        raise InvalidValueError(f"service {service_id} has no usable name")
    return ServiceRef(kind=kind, name=name, base_url=entry.base_url.rstrip("/"), search_style=style)
