"""A look-up's audit row names what the decision point disclosed, by whichever path it is written.

A look-up that arrives while the audit trail is idle inserts its row in its own read statement
(docs/adr/0031) only when there is nothing to decide; a patient with a Consent or a record labelled
for a clearance is read, decided and then audited, as every other read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.factories import make_hpii, make_ihi

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy


async def test_look_ups_one_at_a_time_audit_only_what_was_disclosed(privacy: Privacy) -> None:
    """One look-up at a time: of a plain patient the row names both records; of a patient with a record labelled
    HIV it names the other one and one withheld; of an opted-out patient none and two withheld; each with the
    purpose and practitioner stated, and the answers say withheld plainly."""
    plain, labelled, opted_out, hpii = make_ihi(), make_ihi(), make_ihi(), make_hpii()
    for ihi in (plain, labelled, opted_out):
        await privacy.gateway(ihi, labels=["HIV"] if ihi == labelled else None)
        await privacy.gateway(ihi)
    await privacy.cli("consent", "opt-out", opted_out)
    consumer = await privacy.consumer()
    headers = {"IEF-Purpose-Of-Use": "TREAT", "IEF-On-Behalf-Of": hpii}
    answers = {ihi: await consumer.lookup(ihi, headers=headers) for ihi in (plain, labelled, opted_out)}
    async with privacy.server.database.writer() as conn:
        rows = {
            ihi: await conn.fetchrow(
                "SELECT purpose_of_use, practitioner, withheld, records FROM audit_events WHERE request_id = $1",
                answer.headers["x-request-id"],
            )
            for ihi, answer in answers.items()
        }
        unlabelled = {
            ihi: {
                r["record_id"]
                for r in await conn.fetch(
                    "SELECT record_id FROM records WHERE ihi = $1 AND security_labels = '{}'", ihi
                )
            }
            for ihi in answers
        }
    shown = {ihi: (len(a.json()["records"]), a.json().get("withheld", False)) for ihi, a in answers.items()}
    assert shown == {plain: (2, False), labelled: (1, True), opted_out: (0, True)}
    audited = {ihi: (set(row["records"]), row["withheld"]) for ihi, row in rows.items() if row is not None}
    assert audited == {plain: (unlabelled[plain], 0), labelled: (unlabelled[labelled], 1), opted_out: (set(), 2)}
    assert {(row["purpose_of_use"], row["practitioner"]) for row in rows.values() if row} == {("TREAT", hpii)}
