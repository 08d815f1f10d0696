"""The privacy rule (pure): custodian, clearances, Consents (opt-out, exceptions, restrictions, periods) and
break-glass, and how a FHIR Consent compiles to it."""

from __future__ import annotations

from typing import Any

import pytest

from registry.auth.requester import Requester
from registry.privacy.policy import decide
from schemas.fhir.consent import compile_consent
from schemas.fhir.parse import InvalidResource
from schemas.privacy import ConsentRules, Provision, Verdict
from tests.factories import make_hpii, make_service_id

NOW = 1_800_000_000.0
GATEWAY = make_service_id()
CONSUMER = make_service_id()
OPT_OUT = (ConsentRules(consent_id="c", permit=False),)


def asking(**fields: Any) -> Requester:
    """A requester bound to CONSUMER, changed by keyword."""
    return Requester(**{"client_id": "ehr", "service_id": CONSUMER, **fields})


def verdict(requester: Requester, policy: tuple[ConsentRules, ...] = (), labels: tuple[str, ...] = ()) -> Verdict:
    """The verdict on a record of GATEWAY at NOW."""
    return decide(requester, policy, custodian=GATEWAY, labels=labels, now=NOW)


def test_no_consent_and_no_label_discloses() -> None:
    """A record of a patient without Consents, without sensitive labels, is disclosed."""
    assert verdict(asking()) is Verdict.DISCLOSE
    assert verdict(asking(), labels=("N",)) is Verdict.DISCLOSE


def test_the_custodian_always_sees_its_own_records() -> None:
    """The service holding the record sees it whatever the Consent or labels say."""
    assert verdict(asking(service_id=GATEWAY), OPT_OUT, ("V", "PSY")) is Verdict.DISCLOSE


@pytest.mark.parametrize("label", ["R", "V", "PSY", "HIV", "ETH", "SDV", "SEX", "STD"])
def test_a_sensitive_label_needs_a_clearance(label: str) -> None:
    """Every restricted or sensitive label is withheld without a clearance for it, disclosed with one."""
    assert verdict(asking(), labels=(label,)) is Verdict.WITHHOLD
    assert verdict(asking(clearances=frozenset({label})), labels=(label,)) is Verdict.DISCLOSE


def test_every_label_needs_its_own_clearance() -> None:
    """A record labelled PSY and HIV needs both clearances."""
    assert verdict(asking(clearances=frozenset({"PSY"})), labels=("PSY", "HIV")) is Verdict.WITHHOLD


def test_opt_out_withholds_and_its_exceptions_permit() -> None:
    """A base deny withholds; a nested permit (by purpose, by recipient) makes an exception."""
    assert verdict(asking(purpose="TREAT"), OPT_OUT) is Verdict.WITHHOLD
    by_purpose = (ConsentRules("c", permit=False, provisions=(Provision(permit=True, purposes=("TREAT",)),)),)
    assert verdict(asking(purpose="TREAT"), by_purpose) is Verdict.DISCLOSE
    assert verdict(asking(purpose="HRESCH"), by_purpose) is Verdict.WITHHOLD
    assert verdict(asking(), by_purpose) is Verdict.WITHHOLD
    by_recipient = (
        ConsentRules("c", permit=False, provisions=(Provision(permit=True, recipients=(f"service:{CONSUMER}",)),)),
    )
    assert verdict(asking(), by_recipient) is Verdict.DISCLOSE
    assert verdict(asking(service_id=make_service_id()), by_recipient) is Verdict.WITHHOLD


def test_restrictions_by_recipient_custodian_label_and_practitioner() -> None:
    """Nested denies restrict a consent by who asks, who holds, which label, which clinician."""
    hpii = make_hpii()
    rules = {
        "recipient": Provision(permit=False, recipients=(f"service:{CONSUMER}",)),
        "custodian": Provision(permit=False, custodians=(f"service:{GATEWAY}",)),
        "label": Provision(permit=False, labels=("SEX",)),
        "practitioner": Provision(permit=False, recipients=(f"hpii:{hpii}",)),
    }
    for name, provision in rules.items():
        policy = (ConsentRules("c", permit=True, provisions=(provision,)),)
        requester = asking(practitioner=hpii, clearances=frozenset({"SEX"}))
        assert verdict(requester, policy, ("SEX",)) is Verdict.WITHHOLD, name
    policy = (ConsentRules("c", permit=True, provisions=(rules["label"],)),)
    assert verdict(asking(), policy) is Verdict.DISCLOSE  # an unlabelled record is not restricted by a label


def test_a_deny_wins_over_a_permit_and_over_other_consents() -> None:
    """Matching deny and permit provisions: deny; two Consents: either's denial withholds."""
    both = (ConsentRules("c", permit=True, provisions=(Provision(True), Provision(False))),)
    assert verdict(asking(), both) is Verdict.WITHHOLD
    assert verdict(asking(), (ConsentRules("a", permit=True), *OPT_OUT)) is Verdict.WITHHOLD


def test_periods_bound_consents_and_provisions() -> None:
    """A Consent or provision outside its period does not apply."""
    expired = (ConsentRules("c", permit=False, end=NOW - 1),)
    future = (ConsentRules("c", permit=False, start=NOW + 1),)
    assert verdict(asking(), expired) is Verdict.DISCLOSE
    assert verdict(asking(), future) is Verdict.DISCLOSE
    lapsed = (ConsentRules("c", permit=False, provisions=(Provision(True, end=NOW - 1),)),)
    assert verdict(asking(), lapsed) is Verdict.WITHHOLD


def test_break_glass_overrides_unless_denied_explicitly_or_very_restricted() -> None:
    """ETREAT from a permitted client breaks the glass over an opt-out, a restriction and a missing clearance;
    not without the permission or the purpose, not when a provision denies ETREAT, never over V."""
    glass = asking(break_glass=True, purpose="ETREAT")
    assert verdict(glass, OPT_OUT) is Verdict.BREAK_GLASS
    assert verdict(glass, labels=("PSY",)) is Verdict.BREAK_GLASS
    assert verdict(asking(purpose="ETREAT"), OPT_OUT) is Verdict.WITHHOLD
    assert verdict(asking(break_glass=True, purpose="TREAT"), OPT_OUT) is Verdict.WITHHOLD
    explicit = (ConsentRules("c", permit=True, provisions=(Provision(False, purposes=("ETREAT",)),)),)
    assert verdict(glass, explicit) is Verdict.WITHHOLD
    assert verdict(glass, labels=("V",)) is Verdict.WITHHOLD


def _consent(provision: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Consent", "status": "active", "provision": provision}


def test_a_consent_compiles_to_its_rules() -> None:
    """Base type, period, nested provisions by actor (recipient or custodian), purpose, label and period."""
    hpio = "8003620000000005"
    rules = compile_consent(
        _consent(
            {
                "type": "deny",
                "period": {"start": "2020-01-01T00:00:00Z"},
                "provision": [
                    {
                        "type": "permit",
                        "actor": [
                            {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                   "code": "CST"}]}, "reference": {"reference": f"Endpoint/{GATEWAY}"}},
                            {"role": {"coding": [{"code": "IRCP"}]}, "reference": {"identifier": {
                                "system": "http://ns.electronichealth.net.au/id/hi/hpio/1.0", "value": hpio}}},
                        ],
                        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
                    },
                    {"securityLabel": [{"code": "HIV"}]},
                ],
            }
        )
    )  # fmt: skip
    assert rules.permit is False
    assert rules.start == 1_577_836_800.0
    first, second = rules.provisions
    assert (first.permit, first.custodians, first.recipients, first.purposes) == (
        True, (f"service:{GATEWAY}",), (f"hpio:{hpio}",), ("TREAT",),
    )  # fmt: skip
    assert (second.permit, second.labels) == (True, ("HIV",))  # no type: the opposite of the base


def test_base_criteria_make_a_restriction_not_an_opt_out() -> None:
    """A base deny with a purpose denies that purpose only."""
    rules = compile_consent(_consent({"type": "deny", "purpose": [{"code": "HRESCH"}]}))
    assert verdict(asking(purpose="HRESCH"), (rules,)) is Verdict.WITHHOLD
    assert verdict(asking(purpose="TREAT"), (rules,)) is Verdict.DISCLOSE


@pytest.mark.parametrize(
    "provision",
    [
        {"type": "deny", "purpose": [{"code": "NOTAPURPOSE"}]},
        {"type": "deny", "securityLabel": [{"code": "XYZ"}]},
        {"type": "deny", "actor": [{"reference": {"reference": "Organization/1"}}]},
        {"type": "deny", "provision": [{"provision": [{"type": "permit"}]}]},
        {"type": "deny", "period": {"start": "yesterday"}},
    ],
)
def test_a_consent_that_cannot_be_enforced_is_refused(provision: dict[str, Any]) -> None:
    """Unknown purposes or labels, actors that are not services or HPI-O/HPI-I, deep nesting, bad periods."""
    with pytest.raises(InvalidResource):
        compile_consent(_consent(provision))
