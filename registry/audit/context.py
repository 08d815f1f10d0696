"""The audit context of one request, and how an audit row is built from it.

``AuditMiddleware`` opens an ``AuditContext`` for every HTTP request and keeps it in a context
variable, so services can add what only they know (``note_patients``, ``note_records``,
``note_detail``) without any HTTP in them. Everything else is read from the ASGI scope when the
row is built (what an error response said included: ``registry.outcome`` leaves it in the request's
state): the interaction of the route's ``RouteSpec``, path and query parameters (a patient's
IHI), the request ID, the authenticated ``Principal`` and the caller's address.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec

from registry.auth.requester import requester_in
from registry.auth.scopes import Principal
from registry.route import OUTCOME_KEY, PRINCIPAL_KEY, route_spec
from schemas.audit import Action, AuditEntry, Interaction, default_action, outcome_of
from schemas.types import IHI_SYSTEM_ALIASES, InvalidValueError, parse_ihi

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from litestar.types import Scope

__all__ = (
    "PATIENT_QUERY_PARAMS",
    "PEER_REQUEST_ID_HEADER",
    "AuditContext",
    "WriteOutcome",
    "close",
    "current",
    "note_break_glass",
    "note_detail",
    "note_patients",
    "note_records",
    "note_withheld",
    "opened",
)

PATIENT_QUERY_PARAMS = ("patient", "subject:identifier", "patient.identifier", "identifier")
"""Query parameters that name a patient (``system|value`` or a bare IHI)."""

PEER_REQUEST_ID_HEADER = b"ief-request-id"
_MAX_PATH = 2048
_MAX_QUERY = 4096
_MAX_TEXT = 4000
"""Longest detail kept: a broker search lists every service it asked, with how each answered."""

_METHOD_INTERACTIONS = {
    "GET": Interaction.READ,
    "HEAD": Interaction.READ,
    "POST": Interaction.CREATE,
    "PUT": Interaction.UPDATE,
    "PATCH": Interaction.PATCH,
    "DELETE": Interaction.DELETE,
}
"""The interaction a refused method would have performed (any other method: an operation)."""

_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar("audit_context", default=None)


def _valid_ihi(value: str) -> str | None:
    system, bar, code = value.rpartition("|")
    if bar and system and system not in IHI_SYSTEM_ALIASES:
        return None
    try:
        return parse_ihi(code.strip())
    except InvalidValueError:
        return None


def _printable(value: str, limit: int) -> str:
    value = value[:limit]
    return value if value.isprintable() else "".join(c if c.isprintable() else "?" for c in value)


@dataclass(slots=True)
class WriteOutcome:
    """How a write ends, as its service states it inside ``AuditTrail.transaction``.

    Attributes:
        status: the HTTP status the request answers (None: not stated, nothing is written).
        action: overrides the interaction's action (an update that created a record is C).
        records: IDs of the records written.
        detail: what happened (``created``, a batch's counts).
        failed: the request failed in part although its status says success (a batch with failed items).
    """

    status: int | None = None
    action: Action | None = None
    records: list[str] = field(default_factory=list)
    detail: str | None = None
    failed: bool = False

    def done(
        self,
        *,
        status: int,
        action: Action | None = None,
        records: Iterable[object] = (),
        detail: str | None = None,
        failed: bool = False,
    ) -> None:
        """State the write's outcome."""
        self.status, self.action, self.detail, self.failed = status, action, detail, failed
        self.records = [str(r) for r in records]


@dataclass(slots=True)
class AuditContext:
    """What the audit knows about one request while it is served.

    Attributes:
        scope: the request's ASGI scope (shared with the router, so the matched route shows here).
        patients: IHIs services noted, in order, without repeats (a dict used as an ordered set).
        records: record IDs noted by reads (likewise).
        detail: what the outcome needs beyond the status (an error, a batch's counts).
        audited: the request's row is committed (in its write transaction); nothing more to write.
        withheld: records (or entries) the privacy decision point withheld from the answer.
        break_glass: something was disclosed only by break-glass.
    """

    scope: Scope
    patients: dict[str, None] = field(default_factory=dict)
    records: dict[str, None] = field(default_factory=dict)
    detail: str | None = None
    audited: bool = False
    withheld: int = 0
    break_glass: bool = False
    refused: Interaction | None = None
    """The interaction of a method refused (405) on a patient-linked path, which no handler matched."""

    @property
    def interaction(self) -> Interaction | None:
        """The interaction of the matched route (or of a refused method on a patient-linked path), or None
        when the route is not patient-linked (or unmatched)."""
        handler: Any = self.scope.get("route_handler")
        audit = route_spec(handler).audit if handler is not None else None
        return audit or self.refused

    def refuse_method(self, path_params: dict[str, Any]) -> None:
        """Audit this request as its method's interaction: it was refused (405) on a path whose other
        methods are patient-linked; ``path_params`` are that path's (its IHI, if it names one)."""
        self.refused = _METHOD_INTERACTIONS.get(str(self.scope.get("method", "")), Interaction.OPERATION)
        self.scope["path_params"] = path_params

    @property
    def pending(self) -> bool:
        """Whether this request still owes its audit row."""
        return not self.audited and self.interaction is not None

    def add_patients(self, ihis: Iterable[str]) -> None:
        """Note patients the request concerns."""
        self.patients.update(dict.fromkeys(ihis))

    def add_records(self, record_ids: Iterable[object]) -> None:
        """Note records the request read."""
        self.records.update(dict.fromkeys(str(r) for r in record_ids))

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", ()):
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def _named_patients(self) -> Iterator[str]:
        ihi = self.scope.get("path_params", {}).get("ihi")
        if isinstance(ihi, str) and (valid := _valid_ihi(ihi)):
            yield valid
        query = self.scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=False) if query else ():
            if name in PATIENT_QUERY_PARAMS and (valid := _valid_ihi(value)):
                yield valid

    def entry(self, *, status: int, observer: str, write: WriteOutcome | None = None) -> AuditEntry:
        """The audit row of this request as it ends with ``status``.

        Args:
            status: the HTTP status answered (or about to be).
            observer: this registry's service ID.
            write: how a write ended, as its service stated it in the write's transaction.
        """
        interaction = self.interaction or Interaction.OPERATION
        state: dict[str, Any] = self.scope.get("state", {})
        principal = state.get(PRINCIPAL_KEY)
        who = principal if isinstance(principal, Principal) else None
        requester = requester_in(state)
        client = self.scope.get("client")
        peer_request_id = self._header(PEER_REQUEST_ID_HEADER)
        patients = dict.fromkeys(self._named_patients()) | self.patients
        raw_path = self.scope.get("raw_path") or str(self.scope.get("path", "")).encode()
        return AuditEntry(
            recorded=datetime.now(UTC),
            request_id=str(state.get("request_id", "")),
            peer_request_id=_printable(peer_request_id, 128) if peer_request_id else None,
            interaction=str(interaction),
            method=str(self.scope.get("method", "")),
            path=_printable(raw_path.decode("latin-1"), _MAX_PATH),
            query=_printable(self.scope.get("query_string", b"").decode("latin-1"), _MAX_QUERY),
            client_id=who.client_id if who else None,
            client_service=who.service_id if who else None,
            client_address=str(client[0]) if client else None,
            token_id=who.token_id if who else None,
            observer=observer,
            patients=tuple(patients),
            purpose_of_use=requester.purpose if requester else None,
            practitioner=requester.practitioner if requester else None,
            withheld=self.withheld,
            break_glass=self.break_glass,
            **self._ending(status, write or WriteOutcome(), interaction),
        )

    def entries(self, writes: Mapping[str, WriteOutcome], *, observer: str) -> list[tuple[str, AuditEntry]]:
        """The row of this request for each way a write may end, by name (built once, then varied)."""
        found: list[tuple[str, AuditEntry]] = []
        interaction = self.interaction or Interaction.OPERATION
        for name, write in writes.items():
            status = write.status or 0
            if not found:
                found.append((name, self.entry(status=status, observer=observer, write=write)))
            else:
                found.append((name, msgspec.structs.replace(found[0][1], **self._ending(status, write, interaction))))
        return found

    def _said(self) -> str | None:
        """What services noted, then what an error response said, in that order ("; " between them)."""
        answered = self.scope.get("state", {}).get(OUTCOME_KEY)
        parts = [text for text in (self.detail, answered) if text]
        return "; ".join(parts) if parts else None

    def _ending(self, status: int, write: WriteOutcome, interaction: Interaction) -> dict[str, Any]:
        """The columns that depend on how the request ends: status, outcome, action, detail, records."""
        outcome = outcome_of(status)
        if write.failed and outcome == 0:
            outcome = outcome_of(400)
        text = write.detail or self._said()
        return {
            "status": status,
            "outcome": int(outcome),
            "action": str(write.action or default_action(interaction)),
            "detail": _printable(text, _MAX_TEXT) if text else None,
            "records": tuple(dict.fromkeys(write.records) | self.records),
        }


def current() -> AuditContext | None:
    """The audit context of the request being served, if any."""
    return _current.get()


def opened(scope: Scope) -> tuple[AuditContext, contextvars.Token[AuditContext | None]]:
    """Open the audit context of a request; reset the returned token when the request ends."""
    context = AuditContext(scope)
    return context, _current.set(context)


def close(token: contextvars.Token[AuditContext | None]) -> None:
    """End the audit context opened with ``token``."""
    _current.reset(token)


def note_patients(ihis: Iterable[str]) -> None:
    """Record that the current request concerns these patients (no-op outside a request)."""
    context = _current.get()
    if context is not None:
        context.add_patients(ihis)


def note_records(record_ids: Iterable[object]) -> None:
    """Record that the current request read these records (no-op outside a request)."""
    context = _current.get()
    if context is not None:
        context.add_records(record_ids)


def note_withheld(count: int) -> None:
    """Record that the privacy decision point withheld ``count`` records from the current answer."""
    context = _current.get()
    if context is not None:
        context.withheld += count


def note_break_glass(count: int) -> None:
    """Record that the current answer disclosed ``count`` records by break-glass (no-op outside a request)."""
    context = _current.get()
    if context is not None and count:
        context.break_glass = True


def note_detail(text: str) -> None:
    """Say what the current request's outcome needs beyond its status (no-op outside a request).

    Several parts of one request may each say something (the federation look-up, then the broker's
    fan-out, then an error): their notes are kept in order, joined by "; ".
    """
    context = _current.get()
    if context is not None:
        context.detail = text if context.detail is None else f"{context.detail}; {text}"
