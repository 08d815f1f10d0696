"""The answer of ``Patient/$locate``: a searchset Bundle of gateways, and an outcome for unresolved hops.

With ``follow=false`` this registry's referrals are answered as they are: each ``registry`` record
is the Endpoint of the registry it names (payload type ``Basic``, address its FHIR base), so a
consumer can resolve on its own.

Each gateway that holds data for the patient is an ``Endpoint`` (``search.mode`` ``match``) built
from its directory entry at the registry that holds the record; one learned through other
registries carries the chain in the ``locate-chain`` extension. When a registry could not be
followed, one ``OperationOutcome`` entry (``search.mode`` ``outcome``) has a warning per registry:
the FHIR issue code, the reason as a ``federation-unresolved-reason`` coding in ``details``, the
registry's service ID in ``details.text`` and in the ``unresolved-service`` extension, the chain
that referred to it, and the explanation in ``diagnostics``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from schemas.fhir.canonical import EXT_LOCATE_CHAIN, EXT_UNRESOLVED_SERVICE, UNRESOLVED_REASON
from schemas.fhir.endpoint import endpoint_of
from schemas.fhir.outcome import OutcomeIssue, operation_outcome, withheld_issue
from schemas.types import RecordStatus, RecordType, ServiceKind, UnresolvedReason

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals
    from schemas.records import Record, Unresolved

__all__ = ("ISSUE_CODES", "locate_bundle")

ISSUE_CODES: dict[UnresolvedReason, str] = {
    UnresolvedReason.TIMEOUT: "timeout",
    UnresolvedReason.UNREACHABLE: "transient",
    UnresolvedReason.ERROR_RESPONSE: "exception",
    UnresolvedReason.INVALID_RESPONSE: "invalid",
    UnresolvedReason.TOO_LARGE: "too-costly",
    UnresolvedReason.UNAUTHORIZED: "security",
    UnresolvedReason.LOOP: "business-rule",
    UnresolvedReason.HOP_LIMIT: "too-costly",
    UnresolvedReason.BUDGET: "too-costly",
    UnresolvedReason.DEADLINE: "incomplete",
    UnresolvedReason.NOT_A_MEMBER: "not-found",
    UnresolvedReason.FAILED_RECENTLY: "transient",
}
"""The FHIR ``IssueType`` of each reason a registry could not be followed."""


def _identifier(canon: Canonicals, service_id: str) -> dict[str, str]:
    return {"system": canon.service_id_system, "value": service_id}


def _chain(canon: Canonicals, via: list[str]) -> dict[str, Any]:
    return {
        "url": canon.extension(EXT_LOCATE_CHAIN),
        "extension": [{"url": "registry", "valueIdentifier": _identifier(canon, sid)} for sid in via],
    }


_ENTRY_KINDS = {RecordType.RECORD: ServiceKind.GATEWAY, RecordType.REGISTRY: ServiceKind.REGISTRY}


def _located(canon: Canonicals, record: Record) -> dict[str, Any] | None:
    """The entry of a gateway that holds active data, or of a registry an active referral names (answered only
    when referrals are not followed: ``follow=false``), or None for any other record."""
    service = record.service
    if service is None or record.status is not RecordStatus.ACTIVE or service.kind is not _ENTRY_KINDS[record.type]:
        return None
    chain = (_chain(canon, record.via),) if record.via else ()
    resource = endpoint_of(canon, record.service_id, service, extensions=chain)
    return {"resource": resource, "search": {"mode": "match"}}


def _issue(canon: Canonicals, unresolved: Unresolved) -> OutcomeIssue:
    chain = f" (referred through {' > '.join(unresolved.via)})" if unresolved.via else ""
    service = _identifier(canon, unresolved.service_id)
    extensions = [{"url": canon.extension(EXT_UNRESOLVED_SERVICE), "valueIdentifier": service}]
    if unresolved.via:
        extensions.append(_chain(canon, unresolved.via))
    return OutcomeIssue(
        f"registry {unresolved.service_id}: {unresolved.reason}: {unresolved.detail}{chain}",
        ISSUE_CODES[unresolved.reason],
        severity="warning",
        coding=(canon.code_system(UNRESOLVED_REASON), str(unresolved.reason)),
        text=unresolved.service_id,
        extensions=tuple(extensions),
    )


def locate_bundle(
    canon: Canonicals,
    records: list[Record],
    unresolved: list[Unresolved],
    *,
    fhir_base: str,
    self_url: str,
    withheld: bool = False,
) -> dict[str, Any]:
    """The ``searchset`` Bundle of ``$locate``.

    A gateway this registry holds the record of has a ``fullUrl`` here (``{fhir_base}/Endpoint/{id}``);
    one learned through other registries has none (FHIR allows that in search results), because
    this server cannot answer a read of it.
    """
    entries: list[dict[str, Any]] = []
    for record in records:
        entry = _located(canon, record)
        if entry is not None:
            if not record.via:
                entry = {"fullUrl": f"{fhir_base}/Endpoint/{record.service_id}", **entry}
            entries.append(entry)
    total = len(entries)
    if unresolved or withheld:
        issues = [_issue(canon, u) for u in unresolved] + ([withheld_issue(canon)] if withheld else [])
        outcome = operation_outcome(issues)
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        bundle["entry"] = entries
    return bundle
