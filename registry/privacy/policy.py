"""The privacy policy as a pure function: one record, one requester, the patient's compiled Consents.

``decide`` is the rule of the decision point (``decision.py`` applies it to lists, notes what it
withheld for the audit and counts it). In order:

1. **The custodian sees its own records**: a client bound to the service that holds a record is
   never refused it (it holds the data; refusing would only break its writes and read-backs).
2. **Security labels**: a record labelled ``R``, ``V`` or with a sensitivity code is disclosed only
   to a client cleared for every such label it carries.
3. **Consent**: each active Consent of the patient (in its period) gives a decision: its nested
   provisions that match the request (recipient, custodian, purpose, label, period; an empty
   criterion matches anything) decide, a matching ``deny`` over a matching ``permit``; with none
   matching, its base decision (``deny`` is an opt-out). Any Consent's denial withholds the record.
4. **Break-glass**: purpose ``ETREAT`` from a client permitted to break the glass overrides a
   Consent's denial, unless a denying provision names ``ETREAT`` itself, and overrides a missing
   clearance, except for ``V`` (very restricted), which only a clearance opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.privacy import CLEARANCE_LABELS, EMERGENCY, VERY_RESTRICTED, Verdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from registry.auth.requester import Requester
    from schemas.privacy import ConsentRules, PatientPolicy, Provision

__all__ = ("consent_denies", "decide")


def _within(start: float | None, end: float | None, now: float) -> bool:
    return (start is None or start <= now) and (end is None or now < end)


def _matches(provision: Provision, requester: Requester, custodian: str, labels: Sequence[str], now: float) -> bool:
    """Whether a provision's criteria all hold for this request and record (empty criteria hold)."""
    if provision.recipients and not (
        f"service:{requester.service_id}" in provision.recipients
        or (requester.practitioner is not None and f"hpii:{requester.practitioner}" in provision.recipients)
    ):
        return False
    if provision.custodians and f"service:{custodian}" not in provision.custodians:
        return False
    if provision.purposes and requester.purpose not in provision.purposes:
        return False
    if provision.labels and not any(label in provision.labels for label in labels):
        return False
    return _within(provision.start, provision.end, now)


def _consent(
    rules: ConsentRules, requester: Requester, custodian: str, labels: Sequence[str], now: float
) -> tuple[bool, bool]:
    """One Consent's decision: (denied, and whether the denial names ``ETREAT`` itself)."""
    if not _within(rules.start, rules.end, now):
        return False, False
    matching = [p for p in rules.provisions if _matches(p, requester, custodian, labels, now)]
    denials = [p for p in matching if not p.permit]
    if denials:
        return True, any(EMERGENCY in p.purposes for p in denials)
    if matching:
        return False, False
    return not rules.permit, False


def consent_denies(
    policy: PatientPolicy, requester: Requester, custodian: str, labels: Sequence[str], now: float
) -> tuple[bool, bool]:
    """Whether the patient's Consents deny this record to this requester, and whether break-glass is
    itself denied (a denying provision names ``ETREAT``)."""
    denied = explicit = False
    for rules in policy:
        no, emergency_too = _consent(rules, requester, custodian, labels, now)
        denied, explicit = denied or no, explicit or emergency_too
    return denied, explicit


def decide(
    requester: Requester, policy: PatientPolicy, *, custodian: str, labels: Sequence[str], now: float
) -> Verdict:
    """The verdict on one record (held by ``custodian``, labelled ``labels``) for ``requester``."""
    if requester.service_id == custodian:
        return Verdict.DISCLOSE
    uncleared = [label for label in labels if label in CLEARANCE_LABELS and label not in requester.clearances]
    denied, explicit = consent_denies(policy, requester, custodian, labels, now) if policy else (False, False)
    if not uncleared and not denied:
        return Verdict.DISCLOSE
    glass = requester.break_glass and requester.purpose == EMERGENCY
    if not glass or VERY_RESTRICTED in uncleared or (denied and explicit):
        return Verdict.WITHHOLD
    return Verdict.BREAK_GLASS
