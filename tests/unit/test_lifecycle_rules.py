"""Pure rules of the record lifecycle and the directory: keys, ages, HPI-Os, organisations, cohorts, filters."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from broker.subscriptions.filters import parse_filters
from registry import errors
from registry.directory.service import check_organisation
from registry.records.idempotency import fingerprint, parse_key
from registry.records.jobs import parse_age
from schemas.fhir.group import read_group
from schemas.fhir.parse import InvalidResource
from schemas.services import Organisation
from schemas.types import IHI_SYSTEM, InvalidValueError, ServiceStatus, parse_hpio
from tests.factories import make_ihi

SYSTEM = "https://ief-registry.org/fhir/sid/service-id"


@pytest.mark.parametrize(("header", "key"), [('"scan-42"', "scan-42"), ("scan-42", "scan-42"), ('"a b"', "a b")])
def test_idempotency_keys_are_structured_strings_or_tokens(header: str, key: str) -> None:
    """A key is a quoted structured-field string, or leniently a bare token."""
    assert parse_key(header) == key


@pytest.mark.parametrize("header", ["", '""', '"' + "x" * 256 + '"', "a b", '"caf\u00e9"'])
def test_bad_idempotency_keys_are_400(header: str) -> None:
    """Empty, too long, or not printable ASCII: malformed."""
    with pytest.raises(errors.MalformedRequest):
        parse_key(header)


def test_fingerprints_tell_requests_apart() -> None:
    """The same parts give the same fingerprint; any other part another."""
    assert fingerprint("native-put", "a", None) == fingerprint("native-put", "a", None)
    assert fingerprint("native-put", "a", None) != fingerprint("native-put", "a", "removed")


@pytest.mark.parametrize(
    ("text", "age"), [("365d", timedelta(days=365)), ("2w", timedelta(weeks=2)), ("90s", timedelta(seconds=90))]
)
def test_ages(text: str, age: timedelta) -> None:
    """Ages are a number and a unit."""
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "d", "0d", "-1d", "1y", "soon"])
def test_bad_ages_are_422(text: str) -> None:
    """Anything else is invalid input."""
    with pytest.raises(errors.InvalidInput):
        parse_age(text)


def test_hpio_rules() -> None:
    """An HPI-O is 16 digits, prefix 800362, with a Luhn check digit."""
    assert parse_hpio("8003621566684455") == "8003621566684455"
    for bad in ("8003621566684456", "8003601566684455", "800362156668445"):
        with pytest.raises(InvalidValueError):
            parse_hpio(bad)


def test_organisations_are_checked_and_tidied() -> None:
    """The directory's organisation fields: a bad email, phone, URL or HPI-O is refused naming the field."""
    tidy = check_organisation(Organisation(contact_email=" pacs@x.example ", fallback="  phone us "))
    assert (tidy.contact_email, tidy.fallback) == ("pacs@x.example", "phone us")
    for bad, field in (
        (Organisation(contact_email="nobody"), "contactEmail"),
        (Organisation(contact_phone="call me"), "contactPhone"),
        (Organisation(capability_statement_url="ftp://x"), "capabilityStatementUrl"),
        (Organisation(hpio="123"), "hpio"),
    ):
        with pytest.raises(errors.InvalidInput) as refused:
            check_organisation(bad)
        assert refused.value.issues[0].expression == field


def test_only_enabled_services_route() -> None:
    """The one routing rule in Python: enabled routes, disabled and retired do not."""
    assert [s.routes for s in ServiceStatus] == [True, False, False]


def test_a_cohort_is_a_group_of_ihis() -> None:
    """A Group of type person, actual, members named by IHI; anything else is refused with where."""
    ihis = [make_ihi() for _ in range(3)]
    member = [{"entity": {"identifier": {"system": IHI_SYSTEM, "value": i}}} for i in ihis]
    body = {"resourceType": "Group", "type": "person", "actual": True, "member": member}
    assert read_group(msgspec.json.encode(body)).ihis == ihis
    wrong = {**body, "type": "device", "member": [*member, {"entity": {"reference": "Patient/1"}}]}
    with pytest.raises(InvalidResource) as refused:
        read_group(msgspec.json.encode(wrong))
    assert [where for _, where in refused.value.issues] == ["Group.type", "Group.member[3].entity.identifier"]


def test_patient_group_filter() -> None:
    """patient-group names a Group; it cannot be combined with patient."""
    group = "6f0e3b8a-1c2d-4e5f-9a8b-7c6d5e4f3a2b"
    filters = parse_filters([(f"patient-group=Group/{group}", "x")], service_system=SYSTEM)
    assert filters.canonical() == [f"patient-group=Group/{group}"]
    with pytest.raises(errors.InvalidInput):
        parse_filters([(f"patient-group=Group/{group}", "x"), (f"patient={make_ihi()}", "y")], service_system=SYSTEM)
    with pytest.raises(errors.InvalidInput):
        parse_filters([("patient-group=Group/not-a-uuid", "x")], service_system=SYSTEM)
