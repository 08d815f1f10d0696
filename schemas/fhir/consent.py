"""FHIR R4 ``Consent`` in the IHE Privacy Consent on FHIR (PCF) shape, both ways, and what it compiles to.

What is read (``docs/fhir.md`` has the contract)::

    Consent
      status             draft | proposed | active | rejected | inactive | entered-in-error
                         (only active Consents are enforced; inactive withdraws one)
      patient.identifier the patient's IHI (or patient.reference Patient/<IHI>)
      provision.type     deny at the base with no criteria: an opt-out; permit: consent
      provision.period   when the Consent applies
      provision.actor / purpose / securityLabel at the base: the base rule applies only when they match
      provision.provision[]  exceptions and restrictions, each by
                         actor (role CST: the custodian, the service holding the record; any other role:
                         the recipient; reference Endpoint/<service ID>, or identifier HPI-O or HPI-I),
                         purpose (v3 PurposeOfUse), securityLabel (v3 confidentiality / sensitivity),
                         period; type permit or deny (absent: the opposite of the base)

``compile_consent`` turns one into ``schemas.privacy.ConsentRules``, the compact form the decision
point reads. The resource itself is kept as written and answered as written (with id and meta).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.fhir.parse import InvalidResource, Issues, load_resource
from schemas.privacy import (
    HPII_SYSTEM,
    HPIO_SYSTEM,
    PURPOSE_SYSTEM,
    ConsentRules,
    Provision,
    label_system,
    parse_hpii,
    parse_hpio,
    parse_label,
    parse_purpose,
)
from schemas.types import IHI_SYSTEM, IHI_SYSTEM_ALIASES, InvalidValueError, parse_ihi, parse_service_id

__all__ = (
    "CONSENT_STATUSES",
    "ConsentClaim",
    "compile_consent",
    "consent_resource",
    "opt_out_consent",
    "read_consent",
)

CONSENT_STATUSES = ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")
_SCOPE = {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
_CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ROLE_SYSTEMS = frozenset(
    {"http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "http://terminology.hl7.org/CodeSystem/v3-RoleCode"}
)
_CUSTODIAN = "CST"


@dataclass(frozen=True, slots=True)
class ConsentClaim:
    """A Consent body, validated: its id (if any), patient, status, the resource as written (no id or
    meta), and its compiled rules (``consent_id`` left for the service to fill)."""

    id: str | None
    ihi: str
    status: str
    resource: dict[str, Any]
    rules: ConsentRules


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value)
    if len(text) == 4:  # a year
        text += "-01-01"
    if len(text) == 7:  # a month
        text += "-01"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    return parsed.timestamp()


class _Reader:
    """Collects every problem of one Consent before refusing it."""

    def __init__(self) -> None:
        self.issues: Issues = []

    def problem(self, message: str, where: str) -> None:
        self.issues.append((message, where))

    def ihi(self, data: dict[str, Any]) -> str | None:
        patient = data.get("patient") or {}
        identifier, reference = patient.get("identifier"), patient.get("reference")
        try:
            if identifier:
                if identifier.get("system") not in IHI_SYSTEM_ALIASES:
                    self.problem(f"the patient identifier system must be {IHI_SYSTEM}", "Consent.patient.identifier")
                    return None
                return parse_ihi(identifier.get("value") or "")
            if isinstance(reference, str) and reference.startswith("Patient/"):
                return parse_ihi(reference.removeprefix("Patient/"))
        except InvalidValueError as exc:
            self.problem(f"invalid IHI: {exc}", "Consent.patient")
            return None
        self.problem("a Consent names its patient by IHI: patient.identifier", "Consent.patient")
        return None

    def period(self, provision: dict[str, Any], where: str) -> tuple[float | None, float | None]:
        period = provision.get("period") or {}
        try:
            return _seconds(period.get("start")), _seconds(period.get("end"))
        except ValueError:
            self.problem("the period is not a pair of FHIR dateTimes", f"{where}.period")
            return None, None

    def actors(self, provision: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        recipients: list[str] = []
        custodians: list[str] = []
        for index, actor in enumerate(provision.get("actor") or []):
            at = f"{where}.actor[{index}]"
            codings = (actor.get("role") or {}).get("coding") or []
            roles = {c.get("code") for c in codings if c.get("system") in _ROLE_SYSTEMS}
            named = self.actor(actor.get("reference") or {}, at)
            if named is not None:
                (custodians if _CUSTODIAN in roles else recipients).append(named)
        return tuple(sorted(set(recipients))), tuple(sorted(set(custodians)))

    def actor(self, reference: dict[str, Any], where: str) -> str | None:
        """``service:<id>``, ``hpio:<id>`` or ``hpii:<id>`` of an actor's reference, or None (a problem noted)."""
        target, identifier = reference.get("reference"), reference.get("identifier") or {}
        try:
            if isinstance(target, str) and target.startswith("Endpoint/"):
                return "service:" + parse_service_id(target.removeprefix("Endpoint/"))
            if identifier.get("system") == HPIO_SYSTEM:
                return "hpio:" + parse_hpio(identifier.get("value") or "")
            if identifier.get("system") == HPII_SYSTEM:
                return "hpii:" + parse_hpii(identifier.get("value") or "")
        except InvalidValueError as exc:
            self.problem(str(exc), f"{where}.reference")
            return None
        self.problem(
            "an actor is a service (reference Endpoint/<service ID>), an organisation (identifier HPI-O) or a "
            "practitioner (identifier HPI-I)",
            f"{where}.reference",
        )
        return None

    def codes(self, provision: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
        found: list[str] = []
        for index, coding in enumerate(provision.get(name) or []):
            at = f"{where}.{name}[{index}]"
            code = coding.get("code") or ""
            try:
                if name == "purpose":
                    if coding.get("system") not in (None, PURPOSE_SYSTEM):
                        raise InvalidValueError(f"a purpose is a code of {PURPOSE_SYSTEM}")
                    found.append(parse_purpose(code))
                else:
                    label = parse_label(code)
                    if coding.get("system") not in (None, label_system(label)):
                        raise InvalidValueError(f"the label {label} is a code of {label_system(label)}")
                    found.append(label)
            except InvalidValueError as exc:
                self.problem(str(exc), f"{at}.code")
        return tuple(sorted(set(found)))

    def provision(self, provision: dict[str, Any], where: str, permit: bool) -> Provision:
        recipients, custodians = self.actors(provision, where)
        start, end = self.period(provision, where)
        return Provision(
            permit=permit,
            recipients=recipients,
            custodians=custodians,
            purposes=self.codes(provision, "purpose", where),
            labels=self.codes(provision, "securityLabel", where),
            start=start,
            end=end,
        )


def _criteria(provision: dict[str, Any]) -> bool:
    return any(provision.get(name) for name in ("actor", "purpose", "securityLabel"))


def compile_consent(data: dict[str, Any], reader: _Reader | None = None) -> ConsentRules:
    """The compact rules of one Consent (``consent_id`` empty); problems go to ``reader`` when given.

    Raises:
        InvalidResource: without ``reader``, when the Consent's provisions cannot be enforced.
    """
    own = reader or _Reader()
    base = data.get("provision") or {}
    permit = base.get("type", "permit") != "deny"
    start, end = own.period(base, "Consent.provision")
    provisions: list[Provision] = []
    if _criteria(base):  # the base rule applies when its criteria match; otherwise its opposite does
        provisions.append(own.provision({**base, "period": None}, "Consent.provision", permit))
        permit = not permit
    for index, nested in enumerate(base.get("provision") or []):
        where = f"Consent.provision.provision[{index}]"
        if nested.get("provision"):
            own.problem("provisions nest two levels deep at most", f"{where}.provision")
        kind = nested.get("type")
        provisions.append(own.provision(nested, where, kind == "permit" if kind else not permit))
    if reader is None and own.issues:
        raise InvalidResource("the Consent cannot be enforced", own.issues)
    return ConsentRules(consent_id="", permit=permit, start=start, end=end, provisions=tuple(provisions))


def read_consent(body: bytes) -> ConsentClaim:
    """Parse and validate a Consent body (create or update), and compile it.

    Raises:
        NotJson: the body is not JSON.
        InvalidResource: not a valid R4 Consent, or one whose patient or provisions cannot be enforced.
    """
    data = load_resource(body, "Consent")
    reader = _Reader()
    ihi = reader.ihi(data)
    status = data.get("status")
    if status not in CONSENT_STATUSES:
        reader.problem(f"status is one of {', '.join(CONSENT_STATUSES)}", "Consent.status")
    rules = compile_consent(data, reader)
    if reader.issues or ihi is None:
        raise InvalidResource("the Consent is not one this registry can enforce", reader.issues)
    resource = {key: value for key, value in data.items() if key not in ("id", "meta")}
    return ConsentClaim(id=data.get("id"), ihi=ihi, status=str(status), resource=resource, rules=rules)


def consent_resource(
    resource: dict[str, Any], *, consent_id: str, version: int, last_updated: datetime
) -> dict[str, Any]:
    """A stored Consent as answered: as written, with its id and meta."""
    meta = {"versionId": str(version), "lastUpdated": last_updated}
    return {"resourceType": "Consent", "id": consent_id, "meta": meta, **resource}


def opt_out_consent(ihi: str, *, when: datetime, reason: str | None) -> dict[str, Any]:
    """The Consent of an operator-recorded opt-out: base ``deny``, no exceptions (``consent opt-out``)."""
    rule: dict[str, Any] = {"coding": [{"system": _ACT_CODE, "code": "OPTOUT", "display": "opt-out"}]}
    if reason:
        rule["text"] = reason
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [_SCOPE]},
        "category": [{"coding": [_CATEGORY]}],
        "patient": {"identifier": {"system": IHI_SYSTEM, "value": ihi}},
        "dateTime": when.isoformat(),
        "policyRule": rule,
        "provision": {"type": "deny"},
    }
