"""The decision point: one component every disclosure passes through (DESIGN §12).

Look-ups, ``follow``, ``$locate``, ``Basic`` read, search and history, the broker's fan-out (which
locates through the records service), notifications and the answers given to peer registries all
hand it what they are about to disclose: the requester, the patient's compiled Consents (read in
the same query as the records, ``schemas.privacy.PatientPolicy``) and the records. It answers the
records that may be disclosed and how many were withheld, notes both in the request's audit row
(``registry.audit``: counts, never content) and counts them for ``/metrics``. The rule itself is
``policy.decide``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client import Counter

from registry.audit.context import note_break_glass, note_withheld
from registry.log import get_logger
from registry.privacy.policy import decide
from schemas.privacy import CLEARANCE_LABELS, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from registry.auth.requester import Requester
    from schemas.privacy import PatientPolicy

__all__ = ("DecisionPoint", "Disclosure")

T = TypeVar("T")
_log = get_logger("registry.privacy")


@dataclass(slots=True)
class Disclosure(Generic[T]):
    """What may be disclosed of a list, and how many items were withheld (or disclosed by break-glass)."""

    disclosed: list[T] = field(default_factory=list)
    withheld: int = 0
    broken: int = 0

    def add(self, other: Disclosure[T]) -> None:
        """Add another part of the same answer."""
        self.disclosed.extend(other.disclosed)
        self.withheld += other.withheld
        self.broken += other.broken


class DecisionPoint:
    """Decides, per requester and record, what is disclosed; notes and counts what it withholds."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.withheld_counter = Counter(
            "ief_privacy_withheld", "Records and events withheld by the privacy decision point.", registry=None
        )
        self.break_glass_counter = Counter(
            "ief_privacy_break_glass",
            "Records disclosed only by break-glass (purpose ETREAT from a permitted client), for review.",
            registry=None,
        )

    def verdict(self, requester: Requester, policy: PatientPolicy, *, custodian: str, labels: Sequence[str]) -> Verdict:
        """The verdict on one record (no audit note, no count: ``disclose`` and ``count`` do those)."""
        if not policy and not any(label in CLEARANCE_LABELS for label in labels):
            return Verdict.DISCLOSE  # the common case: no Consent, no sensitive label
        return decide(requester, policy, custodian=custodian, labels=labels, now=self._clock())

    def disclose(
        self,
        requester: Requester,
        policy: PatientPolicy,
        items: Iterable[T],
        *,
        custodian: Callable[[T], str],
        labels: Callable[[T], Sequence[str]],
    ) -> Disclosure[T]:
        """The items of one patient that may be disclosed to ``requester``; what was withheld is noted
        in the request's audit row and counted."""
        found: Disclosure[T] = Disclosure()
        for item in items:
            verdict = self.verdict(requester, policy, custodian=custodian(item), labels=labels(item))
            if verdict is Verdict.WITHHOLD:
                found.withheld += 1
                continue
            if verdict is Verdict.BREAK_GLASS:
                found.broken += 1
            found.disclosed.append(item)
        self.count(requester, found)
        return found

    def count(self, requester: Requester, found: Disclosure[T]) -> None:
        """Note what a disclosure withheld and broke the glass for (audit row, metrics, log)."""
        if found.withheld:
            note_withheld(found.withheld)
            self.withheld_counter.inc(found.withheld)
        if found.broken:
            note_break_glass(found.broken)
            self.break_glass_counter.inc(found.broken)
            _log.warning(
                "break_glass", client_id=requester.client_id, practitioner=requester.practitioner, records=found.broken
            )
