"""IHI and service ID rules: the one definition every edge uses."""

from __future__ import annotations

import random

import pytest

from schemas.types import InvalidValueError, invalid_ihis, luhn_valid, parse_ihi, parse_service_id
from tests.factories import make_ihi, with_bad_check_digit


def test_known_valid_ihi_passes() -> None:
    """A published sample IHI validates and is returned unchanged."""
    assert parse_ihi("8003608166690503") == "8003608166690503"


def test_generated_ihis_pass_and_bad_check_digits_fail() -> None:
    """Every IHI from the factory passes Luhn; changing its last digit always fails."""
    for _ in range(200):
        ihi = make_ihi()
        assert parse_ihi(ihi) == ihi
        with pytest.raises(InvalidValueError, match="check digit"):
            parse_ihi(with_bad_check_digit(ihi))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "16 decimal digits"),
        ("800360816669050", "16 decimal digits"),
        ("80036081666905031", "16 decimal digits"),
        ("800360816669050X", "16 decimal digits"),
        (" 8003608166690503", "16 decimal digits"),
        ("".join(chr(0xFF10 + int(c)) for c in "8003608166690503"), "16 decimal digits"),
        ("8003618166690503", "starts with 800360"),
    ],
)
def test_malformed_ihis_fail(value: str, message: str) -> None:
    """Wrong length, letters, spaces, non-ASCII digits and a wrong prefix are all refused."""
    with pytest.raises(InvalidValueError, match=message):
        parse_ihi(value)


def test_luhn_known_values() -> None:
    """Luhn accepts a textbook valid number and refuses its neighbour."""
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398714")


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("0f8fad5bd9cb469fa16570867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("01hzy3k5qw8x2v9t6r4m0n7p1s", "01HZY3K5QW8X2V9T6R4M0N7P1S"),
    ],
)
def test_service_ids_are_normalised(value: str, canonical: str) -> None:
    """UUIDs become lower case with hyphens; ULIDs become upper case."""
    assert parse_service_id(value) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "",
        "gateway-1",
        "0f8fad5b-d9cb-469f-a165-70867728950",
        "01HZY3K5QW8X2V9T6R4M0N7P1I",
        "81HZY3K5QW8X2V9T6R4M0N7P1S",
    ],
)
def test_bad_service_ids_fail(value: str) -> None:
    """Names, short UUIDs, ULIDs with excluded letters (I) or overflowing first characters are refused."""
    with pytest.raises(InvalidValueError):
        parse_service_id(value)


def _refused(value: str) -> bool:
    try:
        parse_ihi(value)
    except InvalidValueError:
        return True
    return False


def _garbled(rng: random.Random, ihi: str) -> str:
    """An IHI with one digit changed, a digit swapped for a letter or a newline, its prefix changed, its length
    changed, or a newline after it."""
    at = rng.randrange(16)
    return rng.choice([
        ihi[:at] + str((int(ihi[at]) + rng.randrange(1, 10)) % 10) + ihi[at + 1 :],
        ihi[:at] + "x" + ihi[at + 1 :],
        "900360" + ihi[6:],
        ihi[:-1],
        ihi + "0",
        "\uff18" + ihi[1:],  # a full-width eight: a digit to str.isdigit, not to an IHI
        ihi + "\n",  # a trailing newline, which a pattern anchored with $ lets through
        ihi[:-1] + "\n",  # sixteen characters, one of them a newline
    ])  # fmt: skip


@pytest.mark.parametrize("garbled_share", [0.0, 0.3, 1.0])
def test_batch_ihi_check_agrees_with_parse_ihi(garbled_share: float) -> None:
    """Checking a batch's IHIs together refuses exactly the values parse_ihi refuses, at their positions."""
    rng = random.Random(17)
    values = [make_ihi() for _ in range(3000)]
    values = [_garbled(rng, v) if rng.random() < garbled_share else v for v in values]
    expected = [at for at, value in enumerate(values) if _refused(value)]
    assert invalid_ihis(values) == expected
    if garbled_share == 0.0:
        assert expected == []


def test_batch_ihi_check_finds_one_bad_check_digit_among_valid_ones() -> None:
    """One wrong check digit among thousands of valid IHIs (the together path) is found at its position."""
    values = [make_ihi() for _ in range(5000)]
    values[4321] = with_bad_check_digit(values[4321])
    assert invalid_ihis(values) == [4321]
    assert invalid_ihis([]) == []
