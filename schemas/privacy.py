"""Privacy vocabulary (DESIGN §12): purposes of use, security labels, practitioner and organisation
identifiers, and the compact policy a patient's Consents compile to.

The compact policy (``PatientPolicy``) is what the database keeps beside the Consent resources, one
row per patient (``patient_policies``), and what every disclosure reads in the same query as the
records it discloses: a list of ``ConsentRules``, one per active Consent. It is a storage shape,
decoded with msgspec, so a look-up never parses Consent JSON.
"""

from __future__ import annotations

import enum
import re

import msgspec

from schemas.types import HPIO_PREFIX, HPIO_SYSTEM, InvalidValueError, luhn_valid, parse_hpio

__all__ = (
    "CLEARANCE_LABELS",
    "CONFIDENTIALITY_SYSTEM",
    "HPII_PREFIX",
    "HPII_SYSTEM",
    "HPIO_PREFIX",
    "HPIO_SYSTEM",
    "LABELS",
    "PURPOSES",
    "PURPOSE_SYSTEM",
    "SENSITIVITY_SYSTEM",
    "ConsentRules",
    "PatientPolicy",
    "Provision",
    "Verdict",
    "label_system",
    "parse_hpii",
    "parse_hpio",
    "parse_label",
    "parse_labels",
    "parse_purpose",
    "policy_decoder",
    "policy_encoder",
)

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
"""The code system of v3 PurposeOfUse codes (``TREAT``, ``ETREAT``…)."""

PURPOSES = frozenset(
    {
        "TREAT", "ETREAT", "CAREMGT", "CLINTRCH", "CLINTRL", "COC", "POPHLTH", "PATRQT", "FAMRQT", "PWATRNY",
        "SUPNWK", "HPAYMT", "CLMATTCH", "COVAUTH", "COVERAGE", "ELIGDTRM", "ELIGVER", "ENROLLM", "REMITADV",
        "HRESCH", "BIORCH", "TRANSRCH", "HOPERAT", "HMARKT", "HSYSADMIN", "HLEGAL", "HDIRECT", "HACCRED",
        "HCOMPL", "HDECD", "HQUALIMP", "PUBHLTH", "DISASTER", "THREAT", "PATADMIN", "PATSFTY", "PERFMSR",
        "RECORDMGT", "SYSDEV", "TRAIN", "DONAT", "FRAUD", "GOV", "LABELING", "METAMGT", "MEMADMIN",
        "MILDCRG", "HTEST",
    }
)  # fmt: skip
"""The v3 PurposeOfUse codes accepted (the value set ``v3-PurposeOfUse``)."""

EMERGENCY = "ETREAT"
"""Emergency treatment: the purpose of a break-glass request."""

CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SENSITIVITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_CONFIDENTIALITY = frozenset({"U", "L", "M", "N", "R", "V"})
_SENSITIVITY = frozenset({"BH", "ETH", "GDIS", "HIV", "MST", "PSY", "SCA", "SDV", "SEX", "STD", "TBOO"})

LABELS = _CONFIDENTIALITY | _SENSITIVITY
"""Every security label a record may carry: confidentiality codes and v3-ActCode sensitivity codes."""

CLEARANCE_LABELS = frozenset({"R", "V"}) | _SENSITIVITY
"""Labels a client must hold a clearance for to see a record carrying them (U, L, M, N need none)."""

VERY_RESTRICTED = "V"
"""Very restricted: never disclosed by break-glass, only to a client cleared for it."""

HPII_SYSTEM = "http://ns.electronichealth.net.au/id/hi/hpii/1.0"
HPII_PREFIX = "800361"
# HPI-O: HPIO_SYSTEM, HPIO_PREFIX and parse_hpio are the directory's (schemas.types), re-exported here.

_DIGITS16 = re.compile(r"[0-9]{16}")


def label_system(code: str) -> str:
    """The code system of a security label (confidentiality or sensitivity)."""
    return CONFIDENTIALITY_SYSTEM if code in _CONFIDENTIALITY else SENSITIVITY_SYSTEM


def _healthcare_identifier(value: str, prefix: str, name: str) -> str:
    if not _DIGITS16.fullmatch(value):
        raise InvalidValueError(f"an {name} is exactly 16 decimal digits")
    if not value.startswith(prefix):
        raise InvalidValueError(f"an {name} starts with {prefix}")
    if not luhn_valid(value):
        raise InvalidValueError(f"the {name} check digit is wrong (Luhn)")
    return value


def parse_hpii(value: str) -> str:
    """Validate a Healthcare Provider Identifier - Individual (a clinician).

    Raises:
        InvalidValueError: not 16 digits, not starting with ``800361``, or a bad check digit.
    """
    return _healthcare_identifier(value, HPII_PREFIX, "HPI-I")


def parse_purpose(value: str) -> str:
    """Validate one v3 PurposeOfUse code (``TREAT``, ``ETREAT``…); a ``system|code`` token is accepted.

    Raises:
        InvalidValueError: not a PurposeOfUse code.
    """
    system, bar, code = value.rpartition("|")
    if bar and system and system != PURPOSE_SYSTEM:
        raise InvalidValueError(f"a purpose of use is a code of {PURPOSE_SYSTEM}")
    if code not in PURPOSES:
        raise InvalidValueError(f"{code!r} is not a v3 PurposeOfUse code (TREAT, ETREAT, HPAYMT, HRESCH…)")
    return code


def parse_label(value: str) -> str:
    """Validate one security label: a v3 confidentiality code or a v3-ActCode sensitivity code.

    Raises:
        InvalidValueError: not a known label.
    """
    code = value
    if code not in LABELS:
        raise InvalidValueError(
            f"{code!r} is not a security label: confidentiality U L M N R V, or sensitivity "
            f"{' '.join(sorted(_SENSITIVITY))}"
        )
    return code


def parse_labels(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate security labels; sorted, without repeats.

    Raises:
        InvalidValueError: one of them is not a known label.
    """
    return tuple(sorted({parse_label(value) for value in values}))


class Verdict(enum.Enum):
    """What the decision point says of one record for one requester."""

    DISCLOSE = "disclose"
    WITHHOLD = "withhold"
    BREAK_GLASS = "break-glass"
    """Disclosed only because a permitted client asked for emergency treatment."""


class Provision(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One nested provision of a Consent, compiled: when it applies, and whether it permits or denies.

    Empty criteria match anything. ``recipients`` name who asks (``service:<id>``, ``hpio:<id>``,
    ``hpii:<id>``); ``custodians`` name who holds the record (actor role ``CST``); ``start`` and
    ``end`` are Unix seconds (None: open).
    """

    permit: bool
    recipients: tuple[str, ...] = ()
    custodians: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None


class ConsentRules(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One active Consent, compiled: its base decision (``permit`` False is an opt-out), the period it
    applies in, and its nested provisions (exceptions and restrictions)."""

    consent_id: str
    permit: bool
    start: float | None = None
    end: float | None = None
    provisions: tuple[Provision, ...] = ()


PatientPolicy = tuple[ConsentRules, ...]
"""Every active Consent of one patient, compiled (empty: no Consent, nothing restricted)."""

policy_encoder = msgspec.json.Encoder()
policy_decoder = msgspec.json.Decoder(tuple[ConsentRules, ...])
