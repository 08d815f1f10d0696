"""Merging gateways' answers (pure): de-duplication, absolute URLs, contained endpoints, ordering, sources."""

from __future__ import annotations

import itertools
from typing import Any

from broker.discovery.merge import Found, MergeResult, Source, Verdicts, absolute, merge, normalise, study_uid
from broker.discovery.query import DOCUMENT_REFERENCE, IMAGING_STUDY
from schemas.fhir.canonical import Canonicals
from schemas.fhir.parse import InvalidResource, check_resource
from schemas.types import SearchStyle
from tests.fhir import parse_resource

CANON = Canonicals("https://ief-registry.org/fhir")
SOURCE_URL = f"{CANON.base}/StructureDefinition/broker-source"
A = Source("01J00000000000000000000000", "Gateway A", "https://a.example/fhir", SearchStyle.IEF)
B = Source("01J00000000000000000000001", "Gateway B", "https://b.example/r4/fhir", SearchStyle.IEF)
H = Source("01J00000000000000000000002", "Harmony", "https://h.example/fhir", SearchStyle.HARMONY)


def _study(uid: str | None, *, rid: str = "s1", started: str | None = "2024-01-01", **extra: Any) -> dict[str, Any]:
    study: dict[str, Any] = {"resourceType": "ImagingStudy", "id": rid, "status": "available"}
    study["subject"] = {"reference": "Patient/p1"}
    if uid:
        study["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}]
    if started:
        study["started"] = started
    return {**study, **extra}


def _found(resource: dict[str, Any], source: Source = A) -> Found:
    return normalise(resource, source, IMAGING_STUDY)


def _r4(resource: dict[str, Any]) -> str | None:
    try:
        check_resource(resource, resource["resourceType"])
    except InvalidResource as exc:
        return str(exc)
    return None


def _merge(answers: list[list[Found]]) -> list[dict[str, Any]]:
    result = merge(answers, CANON, _r4)
    assert result.rejected == []
    return result.entries


def test_absolute_addresses_follow_rfc_3986() -> None:
    """Paths resolve against the FHIR base, absolute paths against its host, absolute URLs stay."""
    assert absolute("https://g.example/fhir", "Binary/1") == "https://g.example/fhir/Binary/1"
    assert absolute("https://g.example/fhir/", "wado/studies/1") == "https://g.example/fhir/wado/studies/1"
    assert (
        absolute("https://g.example/fhir", "/api/jmix?studyInstanceUid=1.2")
        == "https://g.example/api/jmix?studyInstanceUid=1.2"
    )
    assert absolute("https://g.example/fhir", "https://pacs.example/wado") == "https://pacs.example/wado"


def test_study_uid_from_identifier_or_harmony_id() -> None:
    """The UID is the urn:dicom:uid identifier without urn:oid:, else the id when the style says so."""
    assert study_uid(_study("1.2.3")) == "1.2.3"
    assert study_uid({"identifier": [{"system": "urn:dicom:uid", "value": "1.2.4"}]}) == "1.2.4"
    assert study_uid({"id": "1.2.5"}) is None
    assert study_uid({"id": "1.2.5"}, id_is_uid=True) == "1.2.5"


def test_duplicates_merge_by_study_uid_and_name_every_source() -> None:
    """The same UID at two gateways (with and without urn:oid:, different ids) is one entry from the first
    gateway, listing both sources; fullUrl and meta.source name the first."""
    first = _found(_study("1.2.3", rid="a-1"), A)
    second = _found(_study(None, rid="b-9", identifier=[{"system": "urn:dicom:uid", "value": "1.2.3"}]), B)
    (entry,) = _merge([[first], [second]])
    assert entry["fullUrl"] == "https://a.example/fhir/ImagingStudy/a-1"
    assert entry["resource"]["meta"]["source"] == A.base_url
    sources = [e["valueIdentifier"]["value"] for e in entry["resource"]["extension"] if e["url"] == SOURCE_URL]
    assert sources == [A.service_id, B.service_id]
    assert entry["search"] == {"mode": "match"}
    parse_resource(entry["resource"])


def test_studies_without_uid_are_kept_apart() -> None:
    """Studies with no UID are identified by their fullUrl: two gateways' are two entries."""
    entries = _merge([[_found(_study(None), A)], [_found(_study(None), B)]])
    assert [e["fullUrl"] for e in entries] == [
        "https://a.example/fhir/ImagingStudy/s1",
        "https://b.example/r4/fhir/ImagingStudy/s1",
    ]


def test_newest_first_undated_last() -> None:
    """Entries are ordered by when they started, newest first (10:30 in Sydney is before 01:00 UTC); undated last."""
    studies = [
        _study("1", rid="old", started="2019"),
        _study("2", rid="undated", started=None),
        _study("3", rid="late-utc", started="2024-05-01T01:00:00Z"),
        _study("4", rid="early-sydney", started="2024-05-01T10:30:00+10:00"),
    ]
    entries = _merge([[_found(s) for s in studies]])
    assert [e["resource"]["id"] for e in entries] == ["late-utc", "early-sydney", "old", "undated"]


def test_harmony_inline_endpoints_become_contained() -> None:
    """Inline endpoint objects become contained Endpoints with R4's required elements and absolute addresses,
    referenced from endpoint; the study is valid R4 afterwards."""
    harmony = {
        "resourceType": "ImagingStudy",
        "id": "1.2.840.1",
        "status": "available",
        "subject": {"reference": "Patient/MRN1"},
        "endpoint": [
            {
                "connectionType": "hl7-fhir-rest",
                "payloadType": "ImagingStudy",
                "address": "/api/jmix?studyInstanceUid=1.2.840.1",
            },
            {"address": "https://pacs.example/wado", "status": "bogus"},
            {"connectionType": {"code": "dicom-wado-rs"}},  # no address: dropped
        ],
    }
    found = normalise(harmony, H, IMAGING_STUDY)
    study = found.resource
    assert found.key == "uid:1.2.840.1"
    assert study["endpoint"] == [{"reference": "#endpoint-0"}, {"reference": "#endpoint-1"}]
    first, second = study["contained"]
    assert first["address"] == "https://h.example/api/jmix?studyInstanceUid=1.2.840.1"
    assert first["connectionType"]["code"] == "hl7-fhir-rest"
    assert first["payloadType"] == [{"text": "ImagingStudy"}]
    assert (second["status"], second["address"]) == ("active", "https://pacs.example/wado")
    parse_resource(study)
    assert "contained" not in harmony  # the gateway's copy is left alone


def test_existing_references_and_contained_endpoints() -> None:
    """References are kept; contained Endpoints get absolute addresses; new ids do not clash with existing ones."""
    study = _study(
        "9.9",
        contained=[
            {"resourceType": "Endpoint", "id": "endpoint-0", "status": "active",
             "connectionType": {"code": "dicom-wado-rs"}, "payloadType": [{"text": "DICOM"}], "address": "wado"},
        ],
        endpoint=[{"reference": "#endpoint-0"}, {"reference": "Endpoint/e7"}, {"address": "jmix/9.9"}],
        series=[{"uid": "9.9.1", "modality": {"code": "CT"}, "endpoint": [{"address": "series/9.9.1"}]}],
    )  # fmt: skip
    result = normalise(study, B, IMAGING_STUDY).resource
    assert [c["id"] for c in result["contained"]] == ["endpoint-0", "endpoint-1", "endpoint-2"]
    assert [c["address"] for c in result["contained"]] == [
        "https://b.example/r4/fhir/wado",
        "https://b.example/r4/fhir/jmix/9.9",
        "https://b.example/r4/fhir/series/9.9.1",
    ]
    assert result["endpoint"] == [
        {"reference": "#endpoint-0"},
        {"reference": "Endpoint/e7"},
        {"reference": "#endpoint-1"},
    ]
    assert result["series"][0]["endpoint"] == [{"reference": "#endpoint-2"}]
    parse_resource(result)


def test_documents_merge_by_master_identifier() -> None:
    """DocumentReferences with the same master identifier are one entry; relative attachment URLs become absolute."""

    def document(rid: str, master: str, date: str) -> dict[str, Any]:
        return {
            "resourceType": "DocumentReference",
            "id": rid,
            "status": "current",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
            "date": date,
            "content": [{"attachment": {"url": f"Binary/{rid}"}}],
        }

    found = [
        [normalise(document("a", "urn:oid:1.1", "2024-01-01T00:00:00Z"), A, DOCUMENT_REFERENCE)],
        [
            normalise(document("b", "urn:oid:1.1", "2024-01-01T00:00:00Z"), B, DOCUMENT_REFERENCE),
            normalise(document("c", "urn:oid:1.2", "2024-02-01T00:00:00Z"), B, DOCUMENT_REFERENCE),
        ],
    ]
    entries = _merge(found)
    assert [e["resource"]["id"] for e in entries] == ["c", "a"]
    assert entries[1]["resource"]["content"][0]["attachment"]["url"] == "https://a.example/fhir/Binary/a"
    for entry in entries:
        parse_resource(entry["resource"])


def test_a_gateways_own_source_extensions_are_replaced() -> None:
    """A gateway that is itself a broker may send broker-source extensions: ours replace them, others are kept."""
    theirs = {"url": "https://vendor.example/ext", "valueString": "x"}
    stale = {"url": SOURCE_URL, "valueIdentifier": {"value": "someone-else"}}
    (entry,) = _merge([[_found(_study("5.5", extension=[theirs, stale]))]])
    assert entry["resource"]["extension"][0] == theirs
    assert [e["valueIdentifier"]["value"] for e in entry["resource"]["extension"][1:]] == [A.service_id]


def test_an_invalid_copy_gives_way_to_the_next_valid_one() -> None:
    """A kept copy must pass the check: an invalid first copy is left out (and listed) and the next gateway's
    valid copy is kept, naming only the gateways whose copies were not refused; later copies are not checked."""
    checked: list[str] = []

    def check(resource: dict[str, Any]) -> str | None:
        checked.append(resource["id"])
        return "numberOfSeries is not a number" if resource.get("numberOfSeries") == "two" else None

    broken = _found(_study("7.7", rid="a-broken", numberOfSeries="two"), A)
    good = _found(_study("7.7", rid="b-good"), B)
    later = _found(_study("7.7", rid="h-later"), H)
    alone = _found(_study("8.8", rid="a-alone", numberOfSeries="two"), A)
    result = merge([[broken, alone], [good], [later]], CANON, check)
    assert isinstance(result, MergeResult)
    (entry,) = result.entries
    assert entry["fullUrl"] == "https://b.example/r4/fhir/ImagingStudy/b-good"
    sources = [e["valueIdentifier"]["value"] for e in entry["resource"]["extension"] if e["url"] == SOURCE_URL]
    assert sources == [B.service_id, H.service_id]
    assert [(found.resource["id"], error) for found, error in result.rejected] == [
        ("a-broken", "numberOfSeries is not a number"),
        ("a-alone", "numberOfSeries is not a number"),
    ]
    assert sorted(checked) == ["a-alone", "a-broken", "b-good"]


def test_verdicts_checked_as_answers_arrive_give_the_merge_its_result_in_any_order() -> None:
    """Checking each gateway's copies as its answer arrives (``Verdicts``) keeps exactly what checking at
    merge time keeps, in every order the answers can arrive in; each copy is checked at most once, and the
    merge itself, after the last answer, checks nothing more."""
    checked: list[str] = []

    def check(resource: dict[str, Any]) -> str | None:
        checked.append(resource["id"])
        return "numberOfSeries is not a number" if resource.get("numberOfSeries") == "two" else None

    answers = [
        [_found(_study("7.7", rid="a-broken", numberOfSeries="two"), A), _found(_study("8.8", rid="a-eight"), A)],
        [_found(_study("7.7", rid="b-good"), B), _found(_study("8.8", rid="b-eight"), B)],
        [_found(_study("7.7", rid="h-later"), H), _found(_study("9.9", rid="h-bad", numberOfSeries="two"), H)],
    ]
    expected = merge(answers, CANON, check)
    kept = [entry["fullUrl"] for entry in expected.entries]
    assert kept == [
        "https://b.example/r4/fhir/ImagingStudy/b-good",
        "https://a.example/fhir/ImagingStudy/a-eight",
    ]  # 9.9 has no valid copy
    for order in itertools.permutations(range(len(answers))):
        checked.clear()
        verdicts = Verdicts(check)
        for index in order:
            verdicts.arrived(index, answers[index])
        before_merge = len(checked)
        result = merge(answers, CANON, verdicts.check)
        assert len(checked) == before_merge, f"arrival order {order}: the merge checked again"
        assert len(checked) == len(set(checked)), f"arrival order {order}: a copy was checked twice"
        assert [entry["fullUrl"] for entry in result.entries] == kept, f"arrival order {order}"
        assert [(f.resource["id"], error) for f, error in result.rejected] == [
            (f.resource["id"], error) for f, error in expected.rejected
        ]
    checked.clear()
    verdicts = Verdicts(check)
    for index, found in enumerate(answers):  # in the order asked: nothing superseded is checked
        verdicts.arrived(index, found)
    assert sorted(checked) == ["a-broken", "a-eight", "b-good", "h-bad"]


def test_identical_copies_are_checked_once() -> None:
    """Copies equal as JSON values (the same study sent byte for byte by gateways of one archive) are checked
    once, whatever order they arrive in; the copy kept is still the first gateway's."""
    checked: list[str] = []

    def check(resource: dict[str, Any]) -> str | None:
        checked.append(resource["id"])
        return None

    copies = [[_found(_study("7.7", rid="same"), source)] for source in (A, B, H)]
    verdicts = Verdicts(check)
    for index in (2, 0, 1):
        verdicts.arrived(index, copies[index])
    (entry,) = merge(copies, CANON, verdicts.check).entries
    assert checked == ["same"]
    assert entry["fullUrl"] == "https://a.example/fhir/ImagingStudy/same"
