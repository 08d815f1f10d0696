"""Native registry API messages (DESIGN section 4.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from schemas.base import Input, Received, Wire
from schemas.types import (
    RecordChange,
    RecordStatus,
    RecordType,
    SearchStyle,
    ServiceKind,
    ServiceStatus,
    UnresolvedReason,
)

__all__ = (
    "REASONS",
    "Actor",
    "BatchItem",
    "BatchItemResult",
    "BatchResult",
    "HistoryEntry",
    "PeerRecord",
    "PeerRecordList",
    "PeerService",
    "Reason",
    "Record",
    "RecordHistory",
    "RecordList",
    "RecordWrite",
    "ServiceRef",
    "StaleReport",
    "StaleService",
    "Unresolved",
)


REASONS = ("entered-in-error", "withdrawn", "legal-hold", "decommissioned")
"""The reasons a removal or an archive names by code; any other text is kept as it is."""

Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, description="Why: " + ", ".join(REASONS) + ", or text.")
]


class RecordWrite(Input):
    """Body of ``PUT /registry/records/{ihi}/{serviceId}``; ``securityLabels`` left out keeps the stored ones."""

    status: RecordStatus = RecordStatus.ACTIVE
    type: RecordType = RecordType.RECORD
    reason: Reason | None = None
    security_labels: list[str] | None = None


class ServiceRef(Wire):
    """A service as the registry that holds a record knows it: its directory entry there.

    For a registry, ``base_url`` is the root of its API (``{base_url}/registry/records``,
    ``{base_url}/fhir``); for a gateway it is its FHIR base, and ``search_style`` says how the
    broker phrases patient searches to it.
    """

    kind: ServiceKind
    name: str
    base_url: str
    search_style: SearchStyle


class Record(Wire):
    """A registry record as stored.

    Look-ups add ``service`` (the service's directory entry at the registry holding the record);
    look-ups that follow referrals add ``via``: the registry service IDs the record was learned
    through, in order (empty for this registry's own records; the last one holds the record).
    ``securityLabels`` are its confidentiality and sensitivity labels (left out when it has none).
    """

    ihi: str
    service_id: str
    status: RecordStatus
    type: RecordType
    last_updated: datetime
    service: ServiceRef | None = None
    via: list[str] | None = None
    service_status: ServiceStatus | None = None
    """Set only on a record of a service that is not routed (disabled, retired), which only an
    operator's look-up with ``status`` widened shows."""
    security_labels: list[str] | None = None


class Unresolved(Wire):
    """A federation hop that could not be followed, and why.

    ``via`` is the chain of registries the referral to ``service_id`` was learned through (empty:
    a record of this registry referred to it; the last one made the referral).
    """

    service_id: str
    reason: UnresolvedReason
    detail: str
    via: list[str]


class RecordList(Wire):
    """Answer of ``GET /registry/records/{ihi}``; ``unresolved`` only when referrals were followed;
    ``withheld`` true when the privacy decision point withheld something (never what)."""

    ihi: str
    records: list[Record]
    unresolved: list[Unresolved] | None = None
    withheld: bool = False


class Actor(Wire):
    """Who made a change: the client, the service it is bound to, and whether it acted as the operator."""

    client_id: str | None
    service_id: str | None
    admin: bool


class HistoryEntry(Wire):
    """One change of one record (one version of it), as kept in the history table.

    ``actor`` is absent on entries recorded before actors were kept; ``previous_service`` is set on a
    ``moved`` entry.
    """

    service_id: str
    status: RecordStatus
    type: RecordType
    change: RecordChange
    previous_status: RecordStatus | None
    recorded_at: datetime
    record_id: str | None = None
    version: int | None = None
    actor: Actor | None = None
    reason: str | None = None
    previous_service: str | None = None
    security_labels: list[str] | None = None


class RecordHistory(Wire):
    """Answer of ``GET /registry/records/{ihi}/history``: every change, oldest first."""

    ihi: str
    history: list[HistoryEntry]
    withheld: bool = False


class BatchItem(Input):
    """One item of ``POST /registry/records:batch``; ``idempotencyKey`` makes the item's retry harmless."""

    ihi: str
    service_id: str
    status: RecordStatus = RecordStatus.ACTIVE
    type: RecordType = RecordType.RECORD
    reason: Reason | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    security_labels: list[str] | None = None


class BatchItemResult(Wire):
    """The outcome of one batch item, in request order.

    ``result`` is ``created``, ``registered``, ``updated``, ``unchanged`` or ``error`` (then ``error``
    says why and ``code`` is its code of the error catalogue). ``replayed`` is true when the item's
    ``idempotencyKey`` was accepted before: the result is the first one, and nothing was written.
    """

    index: int
    result: str
    ihi: str | None = None
    service_id: str | None = None
    status: RecordStatus | None = None
    type: RecordType | None = None
    last_updated: datetime | None = None
    error: str | None = None
    code: str | None = None
    replayed: bool = False


class BatchResult(Wire):
    """Answer of ``POST /registry/records:batch``."""

    created: int
    updated: int
    unchanged: int
    errors: int
    results: list[BatchItemResult]
    registered: int = 0


class PeerService(Received):
    """A service's directory entry in a peer registry's answer (validated by the federation client)."""

    kind: str
    name: str
    base_url: str
    search_style: str = "ief"


class PeerRecord(Received):
    """One record in a peer registry's answer: loosely typed, so one bad record can be dropped alone."""

    service_id: str
    status: str
    type: str
    last_updated: datetime
    ihi: str | None = None
    service: PeerService | None = None
    security_labels: list[str] | None = None


class PeerRecordList(Received):
    """A peer registry's answer to ``GET /registry/records/{ihi}?follow=false`` (``withheld``: its own
    decision point withheld something from this registry)."""

    ihi: str
    records: list[PeerRecord]
    withheld: bool = False


class StaleService(Wire):
    """One service of the stale report: its active records not registered since the cut-off."""

    service_id: str
    name: str
    status: ServiceStatus
    records: int
    oldest: datetime


class StaleReport(Wire):
    """Answer of ``GET /registry/reports/stale``: per service, the active records not registered for ``olderThan``."""

    older_than: str
    cutoff: datetime
    total: int
    services: list[StaleService]
