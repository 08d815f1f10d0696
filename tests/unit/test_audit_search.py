"""AuditEvent search parameters: patient tokens, date prefixes and precision, paging cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry import errors
from registry.audit.search import (
    EARLIEST,
    LATEST,
    Cursor,
    date_bounds,
    decode_cursor,
    encode_cursor,
    one_value,
    parse_patient,
)
from tests.factories import IHI_SYSTEM, make_ihi, with_bad_check_digit


def test_patient_takes_system_and_value_or_a_bare_ihi() -> None:
    """`<IHI system>|<ihi>` and a bare IHI name the same patient; other systems and bad IHIs are 422."""
    ihi = make_ihi()
    assert parse_patient(f"{IHI_SYSTEM}|{ihi}") == parse_patient(ihi) == ihi
    with pytest.raises(errors.InvalidInput):
        parse_patient(f"urn:oid:1.2.3|{ihi}")
    with pytest.raises(errors.InvalidInput):
        parse_patient(with_bad_check_digit(ihi))


def test_single_value_parameters_refuse_repeats_and_lists() -> None:
    """patient and agent take one value: repeated or comma-separated values are refused."""
    assert one_value(None, "agent") is None
    assert one_value(["a"], "agent") == "a"
    with pytest.raises(errors.InvalidInput):
        one_value(["a", "b"], "agent")
    with pytest.raises(errors.InvalidInput):
        one_value(["a,b"], "agent")


@pytest.mark.parametrize(
    ("values", "since", "until"),
    [
        ([], EARLIEST, LATEST),
        (["2024"], datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        (["eq2024-12"], datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        (["ge2024-02-28", "lt2024-03-01"], datetime(2024, 2, 28, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        (["gt2024-02-28"], datetime(2024, 2, 29, tzinfo=UTC), LATEST),
        (["le2024-02-28T10:15"], EARLIEST, datetime(2024, 2, 28, 10, 16, tzinfo=UTC)),
        (["ge2024-02-28T10:15:30+10:00"], datetime(2024, 2, 28, 0, 15, 30, tzinfo=UTC), LATEST),
        (["le2024-02-28T10:15:30.123456Z"], EARLIEST, datetime(2024, 2, 28, 10, 15, 30, 123457, tzinfo=UTC)),
    ],
)
def test_date_prefixes_bound_the_recorded_time(values: list[str], since: datetime, until: datetime) -> None:
    """Each date value narrows [since, until) by its prefix over the period its precision spans."""
    got_since, got_until = date_bounds(values)
    assert (got_since, got_until) == (since, until)


@pytest.mark.parametrize("value", ["sa2024", "2024-13", "yesterday", "2024-02-30", "ge2024-01-01T25:00"])
def test_bad_dates_are_refused(value: str) -> None:
    """Unsupported prefixes and impossible or malformed dates are 422, naming the parameter."""
    with pytest.raises(errors.InvalidInput) as caught:
        date_bounds([value])
    assert caught.value.issues[0].expression == "date"


def test_cursor_round_trips_and_refuses_forgeries() -> None:
    """A cursor decodes to the keyset it encoded; text that is not a cursor is a 400."""
    cursor = Cursor(datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC) - timedelta(hours=3), 12345)
    assert decode_cursor(encode_cursor(cursor)) == cursor
    assert decode_cursor(None) == Cursor.first()
    with pytest.raises(errors.MalformedRequest):
        decode_cursor("not-a-cursor")
