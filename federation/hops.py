"""Pure policy of one federated look-up: visited set, loops, hop limit, budget, deadline arithmetic.

No I/O and no clock of its own: the resolver passes the time in. A look-up starts at this
registry (the origin). Its own ``registry`` records refer it to peers at hop 1; a peer's
``registry`` records refer to hop 2, and so on. ``Lookup`` keeps the referral graph (each
registry reached, and which registry referred to it), so it knows every registry's chain:

- a referral to the origin, or to a registry on the referrer's own chain, is a **loop**: reported,
  never followed;
- a referral to a registry already reached through another chain (a diamond) is not asked again
  and not reported; if the new chain is shorter, the registry's chain becomes the shorter one
  (results learned from it report the shortest chain known when the look-up ends);
- a referral deeper than the hop limit is reported as **hop-limit**, unless a later referral
  reaches the same registry within the limit (then it is asked after all);
- each request to a peer spends one unit of the **budget**; none is sent once it is spent;
- one **deadline** for the whole look-up: each peer is given what is left of it, and none is asked
  with less than ``min_hop_time`` left.

Every registry is reported at most once (the first reason wins); ``unresolved()`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.records import Unresolved
from schemas.types import UnresolvedReason

if TYPE_CHECKING:
    from registry.config import FederationSettings

__all__ = ("MAX_HOP_LIMIT", "HopLimits", "Lookup")

MAX_HOP_LIMIT = 8
"""The hop limit may be configured up to this (DESIGN §5)."""


@dataclass(frozen=True, slots=True)
class HopLimits:
    """The limits of one look-up (``federation.*`` settings)."""

    hop_limit: int = 4
    budget: int = 32
    deadline: float = 5.0
    min_hop_time: float = 0.05

    def __post_init__(self) -> None:
        """Refuse limits that cannot work."""
        if not 1 <= self.hop_limit <= MAX_HOP_LIMIT:
            raise ValueError(f"the hop limit is 1 to {MAX_HOP_LIMIT}, not {self.hop_limit}")
        if self.budget < 1 or self.deadline <= 0 or self.min_hop_time < 0:
            raise ValueError("the budget is at least 1, the deadline positive, the minimum hop time not negative")

    @classmethod
    def of(cls, settings: FederationSettings) -> HopLimits:
        """The limits the settings give."""
        return cls(
            hop_limit=settings.hop_limit,
            budget=settings.budget,
            deadline=settings.deadline,
            min_hop_time=settings.min_hop_time,
        )


@dataclass(frozen=True, slots=True)
class _Report:
    reason: UnresolvedReason
    detail: str
    referrer: str | None


class Lookup:
    """The state of one look-up: the referral graph, what was sent, what could not be followed."""

    def __init__(self, origin: str, limits: HopLimits, *, started: float, until: float | None = None) -> None:
        """Start a look-up at ``started``; it ends ``limits.deadline`` later, or at ``until`` if that is sooner
        (a caller with a deadline of its own, such as the broker)."""
        self.origin = origin
        self.limits = limits
        self.deadline_at = started + limits.deadline if until is None else min(started + limits.deadline, until)
        self.sent = 0
        self._parent: dict[str, str | None] = {}
        """Each registry reached, and the registry whose record referred to it (None: the origin)."""
        self._beyond: dict[str, str | None] = {}
        """Registries referred to only beyond the hop limit so far, with their referrer."""
        self._reports: dict[str, _Report] = {}

    def chain(self, registry: str | None) -> tuple[str, ...]:
        """The registries from the origin's first referral down to ``registry`` (inclusive); () for the origin."""
        path: list[str] = []
        node = registry
        while node is not None:
            path.append(node)
            node = self._parent[node]
        return tuple(reversed(path))

    def hop(self, registry: str) -> int:
        """How many hops from the origin ``registry`` is, by its chain."""
        return len(self.chain(registry))

    def refer(self, referrer: str | None, target: str) -> bool:
        """Take a referral by ``referrer`` (None: the origin's own record) to ``target``.

        Returns:
            True when ``target`` is newly reached and is to be asked (once it passes the resolver's
            own checks); False for a loop or a registry beyond the hop limit (both reported) or one
            already reached (a diamond; its chain is shortened when this one is shorter).
        """
        via = self.chain(referrer)
        if target == self.origin or target in via:
            detail = "the referral leads back to a registry on its own chain"
            self.report(target, UnresolvedReason.LOOP, detail, referrer)
            return False
        hop = len(via) + 1
        if target in self._parent:
            if hop < self.hop(target):
                self._parent[target] = referrer
            return False
        if hop > self.limits.hop_limit:
            self._beyond.setdefault(target, referrer)
            return False
        self._beyond.pop(target, None)
        self._parent[target] = referrer
        return True

    def remaining(self, now: float) -> float:
        """Seconds left until the look-up's deadline (0 once it has passed)."""
        return max(0.0, self.deadline_at - now)

    def dispatch(self, target: str, now: float) -> float | None:
        """Spend one unit of the budget to ask ``target`` now; return the seconds it is given.

        Returns:
            What is left of the deadline, or None (reported) when too little is left or the budget
            is spent.
        """
        left = self.remaining(now)
        if left <= 0 or left < self.limits.min_hop_time:
            self.report(target, UnresolvedReason.DEADLINE, "the look-up's deadline passed before it could be asked")
            return None
        if self.sent >= self.limits.budget:
            detail = f"the look-up's budget of {self.limits.budget} requests is spent"
            self.report(target, UnresolvedReason.BUDGET, detail)
            return None
        self.sent += 1
        return left

    def report(self, target: str, reason: UnresolvedReason, detail: str, referrer: str | None = None) -> None:
        """Say that ``target`` could not be followed (the first report of a registry wins).

        ``referrer`` is needed only for a registry that was never reached (a loop); otherwise its
        chain in the graph says who referred to it.
        """
        self._reports.setdefault(target, _Report(reason, detail, referrer))

    def unresolved(self) -> list[Unresolved]:
        """Every registry that could not be followed, with the chain that referred to it; shortest first."""
        found = {
            target: Unresolved(service_id=target, reason=r.reason, detail=r.detail, via=list(self._via(target, r)))
            for target, r in self._reports.items()
        }
        for target, referrer in self._beyond.items():
            if target not in found:
                detail = f"it is more than the hop limit of {self.limits.hop_limit} registries away"
                found[target] = Unresolved(
                    service_id=target, reason=UnresolvedReason.HOP_LIMIT, detail=detail, via=list(self.chain(referrer))
                )
        return sorted(found.values(), key=lambda u: (len(u.via), u.service_id))

    def _via(self, target: str, report: _Report) -> tuple[str, ...]:
        if report.reason is not UnresolvedReason.LOOP and target in self._parent:
            return self.chain(self._parent[target])
        return self.chain(report.referrer)
