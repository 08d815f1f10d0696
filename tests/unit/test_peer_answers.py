"""A peer registry's answer as the federation client reads it: tolerant of new fields, strict on values."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from federation.client import records_url, validated
from schemas.records import PeerRecordList
from schemas.types import RecordStatus, RecordType, SearchStyle, ServiceKind
from tests.factories import make_ihi, make_service_id

IHI = make_ihi()
GATEWAY = make_service_id()


def answer(*records: dict[str, Any], **extra: Any) -> PeerRecordList:
    """A peer's answer decoded as the client decodes it."""
    return msgspec.json.decode(
        msgspec.json.encode({"ihi": IHI, "records": list(records), **extra}), type=PeerRecordList
    )


def record(**changes: Any) -> dict[str, Any]:
    """A valid record as a peer of ours sends it, with ``changes``."""
    base = {
        "ihi": IHI,
        "serviceId": GATEWAY,
        "status": "active",
        "type": "record",
        "lastUpdated": "2025-03-01T00:00:00Z",
        "service": {
            "kind": "gateway",
            "name": "Coast imaging",
            "baseUrl": "https://coast.test/fhir/",
            "searchStyle": "harmony",
        },
    }
    return {**base, **changes}


def test_a_valid_record_keeps_the_peers_directory_entry() -> None:
    """Kind, name, base URL (trailing slash dropped) and search style come from the peer's directory entry."""
    result = validated(answer(record()).records, IHI)
    assert result.dropped == []
    [kept] = result.records
    assert (kept.service_id, kept.status, kept.type) == (GATEWAY, RecordStatus.ACTIVE, RecordType.RECORD)
    assert kept.service is not None
    assert (kept.service.kind, kept.service.name, kept.service.base_url, kept.service.search_style) == (
        ServiceKind.GATEWAY, "Coast imaging", "https://coast.test/fhir", SearchStyle.HARMONY,
    )  # fmt: skip


def test_unknown_fields_are_tolerated() -> None:
    """Fields a newer release adds, on the answer, the records or the entries, are ignored."""
    peer_record = record(score=3)
    peer_record["service"] |= {"region": "north"}
    result = validated(answer(peer_record, paging={"next": None}).records, IHI)
    assert [r.service_id for r in result.records] == [GATEWAY]


def test_a_missing_search_style_means_ief() -> None:
    """A directory entry without a search style is an IEF-style gateway."""
    peer_record = record()
    del peer_record["service"]["searchStyle"]
    [kept] = validated(answer(peer_record).records, IHI).records
    assert kept.service is not None
    assert kept.service.search_style is SearchStyle.IEF


def test_a_ulid_service_id_is_normalised() -> None:
    """A ULID in lower case is kept in its canonical upper case."""
    ulid = "01arz3ndektsv4rrffq69g5fav"
    [kept] = validated(answer(record(serviceId=ulid)).records, IHI).records
    assert kept.service_id == ulid.upper()


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"serviceId": "gateway-7"}, "UUID or a ULID"),
        ({"status": "deleted"}, "unknown status"),
        ({"type": "mirror"}, "unknown status"),
        ({"ihi": "8003608166690503"}, "another IHI"),
        ({"service": None}, "no directory entry"),
        ({"service": {"kind": "printer", "name": "x", "baseUrl": "https://x.test"}}, "unknown kind"),
        ({"service": {"kind": "gateway", "name": "x", "baseUrl": "ftp://x.test"}}, "no usable base URL"),
        ({"service": {"kind": "gateway", "name": "x", "baseUrl": "https://x.test?a=1"}}, "no usable base URL"),
        ({"service": {"kind": "gateway", "name": "x", "baseUrl": "http://[::1"}}, "no usable base URL"),
        ({"service": {"kind": "gateway", "name": " ", "baseUrl": "https://x.test"}}, "no usable name"),
    ],
)
def test_an_invalid_record_is_dropped_and_named(changes: dict[str, Any], why: str) -> None:
    """An invalid record is dropped with its position and the reason; the valid ones are kept."""
    result = validated(answer(record(serviceId=make_service_id()), record(**changes)).records, IHI)
    assert len(result.records) == 1
    [dropped] = result.dropped
    assert dropped.startswith("record 1: ")
    assert why in dropped


def test_a_record_without_its_ihi_is_taken_as_the_answers() -> None:
    """A record that omits its IHI belongs to the IHI the answer is for."""
    peer_record = record()
    del peer_record["ihi"]
    [kept] = validated(answer(peer_record).records, IHI).records
    assert kept.ihi == IHI


def test_the_look_up_url_hangs_off_the_registrys_root() -> None:
    """A registry's base URL is the root of its API: the native look-up is under /registry/records."""
    assert records_url("https://b.example/ief/", IHI) == f"https://b.example/ief/registry/records/{IHI}"
