"""Audit vocabulary and the audit row: what one patient-linked request leaves behind.

``Interaction`` is the FHIR RESTful interaction a route performs (``http://hl7.org/fhir/restful-interaction``);
routes declare it in ``opt={"audit": Interaction.READ}``. ``AuditEntry`` is one row to insert;
``StoredAuditEvent`` is a row as stored (with its id, event id and inserting transaction).
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

__all__ = ("Action", "AuditEntry", "Interaction", "Outcome", "StoredAuditEvent", "default_action", "outcome_of")


class Interaction(enum.StrEnum):
    """The RESTful interaction of a patient-linked route (the AuditEvent ``subtype``)."""

    READ = "read"
    VREAD = "vread"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    HISTORY_INSTANCE = "history-instance"
    HISTORY_TYPE = "history-type"
    CREATE = "create"
    SEARCH_TYPE = "search-type"
    SEARCH_SYSTEM = "search-system"
    BATCH = "batch"
    OPERATION = "operation"


class Action(enum.StrEnum):
    """AuditEvent ``action``: create, read, update, delete, execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(enum.IntEnum):
    """AuditEvent ``outcome`` (``http://terminology.hl7.org/CodeSystem/audit-event-outcome``)."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


_ACTIONS = {
    Interaction.READ: Action.READ,
    Interaction.VREAD: Action.READ,
    Interaction.UPDATE: Action.UPDATE,
    Interaction.PATCH: Action.UPDATE,
    Interaction.DELETE: Action.DELETE,
    Interaction.HISTORY_INSTANCE: Action.READ,
    Interaction.HISTORY_TYPE: Action.READ,
    Interaction.CREATE: Action.CREATE,
    Interaction.SEARCH_TYPE: Action.EXECUTE,
    Interaction.SEARCH_SYSTEM: Action.EXECUTE,
    Interaction.BATCH: Action.EXECUTE,
    Interaction.OPERATION: Action.EXECUTE,
}


def default_action(interaction: Interaction) -> Action:
    """The action of an interaction as IHE BALP records it (searches and operations execute)."""
    return _ACTIONS[interaction]


def outcome_of(status: int) -> Outcome:
    """The outcome of an HTTP status: 2xx/3xx success, 4xx minor, 503 major (unavailable), other 5xx serious."""
    if status < 400:
        return Outcome.SUCCESS
    if status < 500:
        return Outcome.MINOR_FAILURE
    if status == 503:
        return Outcome.MAJOR_FAILURE
    return Outcome.SERIOUS_FAILURE


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One audit row to insert: who did what to which patient, when, and how it ended.

    Attributes:
        recorded: when the server recorded the event (UTC).
        request_id: this server's request ID (also the ``X-Request-Id`` answered).
        peer_request_id: the ``IEF-Request-Id`` a calling peer sent, if any.
        interaction: the RESTful interaction of the route.
        action: C, R, U, D or E.
        outcome: 0, 4, 8 or 12.
        status: the HTTP status answered.
        detail: what else the outcome needs (the error, or a batch's counts).
        method: the HTTP method.
        path: the request path as sent (it may hold an IHI: the audit is where patient identity belongs).
        query: the raw query string.
        client_id: the authenticated client, or None for an anonymous request.
        client_service: the service ID the client is bound to.
        client_address: the network address of the caller.
        token_id: the ``jti`` of the bearer token, when it has one.
        observer: this registry's service ID (the source of the event).
        patients: IHIs of the patients the request concerned.
        records: IDs of the records it read or wrote (``Basic`` resource ids).
        purpose_of_use: the purpose of use the requester stated (a v3 PurposeOfUse code).
        practitioner: the HPI-I of the clinician the requester acted for.
        withheld: how many records the privacy decision point withheld from the answer.
        break_glass: something was disclosed only by break-glass.
    """

    recorded: datetime
    request_id: str
    peer_request_id: str | None
    interaction: str
    action: str
    outcome: int
    status: int
    detail: str | None
    method: str
    path: str
    query: str
    client_id: str | None
    client_service: str | None
    client_address: str | None
    token_id: str | None
    observer: str
    patients: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    purpose_of_use: str | None = None
    practitioner: str | None = None
    withheld: int = 0
    break_glass: bool = False


class StoredAuditEvent(AuditEntry, frozen=True, kw_only=True):
    """An audit row as stored: ``id`` and ``xid`` (its transaction) place it; ``event_id`` is the AuditEvent id."""

    id: int
    event_id: str
    xid: int
