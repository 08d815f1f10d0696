"""Where the records service meets the privacy decision point: the one seam every read of records
passes through before anything is answered (DESIGN §12).

Look-ups (with and without ``follow``), history, ``Basic`` read, search, vread and history (and so ``$locate``, the
broker's fan-out and the answers peers get, which all read through the records service) hand their
rows here with the requester; what comes back is what may be disclosed and how many were withheld.
Searches that would list patients without naming one are refused here too.
"""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING

from registry import errors
from registry.privacy.decision import Disclosure

if TYPE_CHECKING:
    from collections.abc import Callable

    from registry.auth.requester import Requester
    from registry.privacy.decision import DecisionPoint
    from registry.records.repository import RecordVersion, StoredChange, StoredRecord
    from schemas.privacy import PatientPolicy
    from schemas.records import HistoryEntry, Record

__all__ = ("Disclosures",)


def _custodian(item: StoredRecord | Record | HistoryEntry) -> str:
    return item.service_id


def _stored_labels(item: StoredRecord) -> tuple[str, ...]:
    return item.security_labels


def _wire_labels(item: Record | HistoryEntry) -> list[str]:
    return item.security_labels or []


def _version_custodian(item: RecordVersion) -> str:
    return item.record.service_id


def _version_labels(item: RecordVersion) -> tuple[str, ...]:
    return item.record.security_labels


class Disclosures:
    """The decision point applied to the rows the records service reads."""

    def __init__(self, decisions: DecisionPoint, *, changed: Callable[[str], bool] | None = None) -> None:
        self._decisions = decisions
        self._changed = changed

    def needs_primary(self, ihi: str) -> bool:
        """Whether a look-up of this patient reads from the primary: their Consents changed moments ago,
        and a replica may not have the change yet (``registry.privacy.signal``)."""
        return self._changed is not None and self._changed(ihi)

    def records(self, requester: Requester, stored: list[StoredRecord]) -> Disclosure[StoredRecord]:
        """The stored records (of one or several patients, in IHI order, each with its patient's policy)
        that may be disclosed."""
        found: Disclosure[StoredRecord] = Disclosure()
        for _, group in groupby(stored, key=lambda s: s.ihi):
            rows = list(group)
            found.add(
                self._decisions.disclose(requester, rows[0].policy, rows, custodian=_custodian, labels=_stored_labels)
            )
        return found

    def versions(self, requester: Requester, versions: list[RecordVersion]) -> Disclosure[RecordVersion]:
        """Versions of records (FHIR vread and history) that may be disclosed, each decided on the labels it
        had then and its patient's Consents now."""
        found: Disclosure[RecordVersion] = Disclosure()
        for _, group in groupby(versions, key=lambda v: v.record.ihi):
            rows = list(group)
            found.add(
                self._decisions.disclose(
                    requester, rows[0].record.policy, rows, custodian=_version_custodian, labels=_version_labels
                )
            )
        return found

    def learned(self, requester: Requester, policy: PatientPolicy, records: list[Record]) -> Disclosure[Record]:
        """Records learned at other registries (federation), decided on this registry's Consents of the patient."""
        return self._decisions.disclose(requester, policy, records, custodian=_custodian, labels=_wire_labels)

    def history(self, requester: Requester, changes: list[StoredChange]) -> Disclosure[HistoryEntry]:
        """The history entries that may be disclosed (each decided on the labels it had then)."""
        policy = changes[0].policy if changes else ()
        entries = [change.entry for change in changes]
        return self._decisions.disclose(requester, policy, entries, custodian=_custodian, labels=_wire_labels)

    def one(self, requester: Requester, stored: StoredRecord) -> None:
        """Refuse to disclose one record read by its id.

        Raises:
            Forbidden: it is withheld from this requester (``withheld``; what is withheld is not said).
        """
        if not self.records(requester, [stored]).disclosed:
            raise errors.Forbidden(
                "this record is withheld from this requester (the patient's consent or the record's security labels)",
                code=errors.ErrorCode.WITHHELD,
            )

    @staticmethod
    def check_enumeration(requester: Requester, ihis: list[str] | None, service_ids: list[str] | None) -> None:
        """Refuse a search that lists a service's patients without naming one, unless the requester is
        bound to every service it names or is the operator.

        Raises:
            Forbidden: ``enumeration``.
        """
        if ihis is not None or service_ids is None or requester.operator:
            return
        others = sorted(set(service_ids) - {requester.service_id})
        if others:
            raise errors.Forbidden(
                f"client {requester.client_id} is bound to service {requester.service_id} and may not list the "
                f"patients of service {others[0]}; name a patient",
                code=errors.ErrorCode.ENUMERATION,
            )
