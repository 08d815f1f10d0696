"""Pure parts of the audit trail by month: canonical rows both ways, checkpoint JWS, month arithmetic."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime

import msgspec
import pytest
from joserfc import jws

from registry.audit.chain import canonical, decode_canonical, link_hash
from registry.audit.checkpoints import (
    TYPE,
    CheckpointInvalid,
    CheckpointSigner,
    month_label,
    open_checkpoint,
    parse_month,
    public_keys,
)
from registry.audit.partitions import add_months, this_month
from registry.audit.retention import default_before
from schemas.audit import StoredAuditEvent
from tests.factories import make_rsa_key


def _event(**changes: object) -> StoredAuditEvent:
    base = StoredAuditEvent(
        id=7, event_id=str(uuid.uuid4()), xid=2**40 + 3, recorded=datetime(2026, 11, 30, 23, 59, 59, 999999, UTC),
        request_id="r-1", peer_request_id=None, interaction="search-type", action="E", outcome=0, status=200,
        detail=None, method="GET", path="/registry/records/8003608166690503", query="status=active",
        client_id="c", client_service=None, client_address="::1", token_id=None, observer="o",
        patients=("8003608166690503",), records=(str(uuid.uuid4()),),
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"detail": 'quotes " and \\ backslashes, ünïcödé, emoji 🩻, newline\n', "peer_request_id": "peer"},
        {"patients": tuple(f"80036081666905{n:02d}" for n in range(40)), "records": ()},
        {"recorded": datetime(2026, 1, 1, tzinfo=UTC), "client_id": None, "client_address": None},
        {"purpose_of_use": "TREAT"},
        {"practitioner": "8003611234567893", "withheld": 3},
        {"purpose_of_use": "ETREAT", "practitioner": "8003611234567893", "break_glass": True},
    ],
    ids=["plain", "text", "many", "nulls", "purpose", "practitioner and withheld", "break-glass"],
)
def test_a_canonical_row_decodes_to_the_same_row(changes: dict[str, object]) -> None:
    """Decoding a row's canonical bytes gives the row back, so its hash can be recomputed from an export."""
    event = _event(**changes)
    data = canonical(event)
    assert decode_canonical(data) == event
    assert canonical(decode_canonical(data)) == data
    assert link_hash(bytes(32), decode_canonical(data)) == link_hash(bytes(32), event)


def test_a_row_says_privacy_in_format_2_only_when_it_has_some() -> None:
    """A row with no purpose, practitioner, withheld count or break-glass hashes in format 1, as every row from
    before those columns did: 22 columns; a row with any of them is format 2 with the four appended."""
    event = _event()
    plain = msgspec.json.decode(canonical(event))
    assert (plain[0], len(plain)) == (1, 22)
    said = msgspec.json.decode(canonical(msgspec.structs.replace(event, withheld=1)))
    assert (said[0], said[:-4][1:], said[-4:]) == (2, plain[1:], [None, None, 1, False])


def test_a_row_of_another_format_is_refused() -> None:
    """A canonical row of another format version, a format 2 row that says nothing of privacy, a format 1 row with
    privacy columns, or not a row at all, is not decoded."""
    data = canonical(_event())
    with pytest.raises(ValueError, match="format version 1 or 2"):
        decode_canonical(b"[3" + data[2:])
    with pytest.raises(ValueError, match="format version 2 says nothing of privacy"):
        decode_canonical(b"[2" + data[2:-1] + b",null,null,0,false]")
    with pytest.raises(ValueError, match="format version 1"):
        decode_canonical(data[:-1] + b',"TREAT",null,0,false]')
    with pytest.raises(ValueError, match="format version 2"):
        decode_canonical(b"[2" + data[2:])
    with pytest.raises(ValueError, match="not a canonical audit row"):
        decode_canonical(b'{"id": 1}')


def _signed(signer: CheckpointSigner) -> str:
    checkpoint = signer.checkpoint(
        date(2026, 11, 1), datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), first_seq=11,
        last_seq=20, prev=bytes(32), head=b"\x01" * 32,
    )  # fmt: skip
    return signer.sign(checkpoint)


def test_a_checkpoint_opens_only_with_its_key() -> None:
    """A checkpoint verifies with the signer's public key and says what was signed; with another key it does not."""
    key, other = make_rsa_key(alg="RS256"), make_rsa_key(alg="RS256", holder="another instance")
    token = _signed(CheckpointSigner(key=lambda: key, issuer="instance"))
    opened = open_checkpoint(token, public_keys([key.as_pem(private=True).decode()]))
    assert (opened.month, opened.first_seq, opened.last_seq, opened.rows) == ("2026-11", 11, 20, 10)
    assert (opened.prev_hash, opened.head_hash, opened.issuer) == ("00" * 32, "01" * 32, "instance")
    with pytest.raises(CheckpointInvalid, match="not a trusted audit key"):
        open_checkpoint(token, public_keys([other.as_pem(private=True).decode()]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_changed_or_foreign_checkpoint_is_refused() -> None:
    """A changed payload, another token type, or an unsigned token does not open."""
    key = make_rsa_key(alg="RS256")
    trusted = public_keys([key.as_pem(private=True).decode()])
    header, payload, signature = _signed(CheckpointSigner(key=lambda: key, issuer="instance")).split(".")
    claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=="))
    forged = _b64(msgspec.json.encode({**claims, "rows": 11}))
    with pytest.raises(CheckpointInvalid, match="does not verify"):
        open_checkpoint(f"{header}.{forged}.{signature}", trusted)
    token = jws.serialize_compact({"alg": "RS256", "kid": key.thumbprint(), "typ": "JWT"}, payload.encode(), key)
    with pytest.raises(CheckpointInvalid, match="not an audit checkpoint"):
        open_checkpoint(token, trusted)
    unsigned = f"{_b64(msgspec.json.encode({'alg': 'none', 'typ': TYPE}))}.{payload}."
    with pytest.raises(CheckpointInvalid):
        open_checkpoint(unsigned, trusted)
    with pytest.raises(CheckpointInvalid, match="not a compact JWS"):
        open_checkpoint("not a token", trusted)


def test_months_are_counted_across_years() -> None:
    """Month arithmetic, labels and the retention's first kept month."""
    assert add_months(date(2026, 11, 1), 2) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert add_months(date(2026, 1, 1), -25) == date(2023, 12, 1)
    assert this_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert (month_label(date(2026, 3, 1)), parse_month("2026-03")) == ("2026-03", date(2026, 3, 1))
    assert default_before(12, datetime(2026, 12, 2, tzinfo=UTC)) == date(2025, 12, 1)
    for bad in ("2026-13", "26-01", "2026/01", "2026-01-01"):
        with pytest.raises(ValueError, match="is not a month"):
            parse_month(bad)
