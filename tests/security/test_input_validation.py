"""Identifiers and codes that smuggle whitespace, newlines, NULs or digits of other scripts past a check.

Every validator takes a whole value or nothing: a full match over ASCII characters. The class of
bad inputs is built from a valid value (``smuggled``) and driven through each validator, and
through the HTTP edges where those values arrive (paths, batch items, FHIR bodies, headers).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from broker.discovery.dates import InvalidDate, parse_range
from broker.subscriptions.retry import parse_duration, parse_retry_after
from registry import errors
from registry.audit.search import date_bounds, parse_patient
from registry.auth.clients import check_bound_service
from registry.auth.scopes import is_scope
from registry.directory.service import check_organisation
from registry.records.idempotency import is_item_key, parse_key
from registry.records.jobs import parse_age
from schemas.privacy import PURPOSE_SYSTEM, parse_hpii, parse_label, parse_purpose
from schemas.services import Organisation
from schemas.types import InvalidValueError, ascii_int, parse_hpio, parse_ihi, parse_service_id
from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_hpii, make_ihi, make_service_id
from tests.fhir import fixture

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("registry", "broker", "federation", "schemas")

_OTHER_DIGITS = {
    "arabic-indic": 0x0660,
    "full-width": 0xFF10,
    "devanagari": 0x0966,
    "mathematical bold": 0x1D7CE,
}


def smuggled(valid: str, *, ows: bool = False) -> Iterator[tuple[str, str]]:
    """Variants of a valid value that must all be refused: (what was done, the value).

    ``ows``: the value is read from an HTTP header or a list, where spaces and tabs around it are
    optional whitespace (RFC 9110 §5.6.3) and allowed; every other variant is still refused.
    """
    for where, text in (("trailing", "{}\n"), ("leading", "\n{}"), ("trailing CRLF", "{}\r\n")):
        yield f"{where} newline", text.format(valid)
    for space in ("\u00a0", "\u2028", "\x0b", "\x0c", *(() if ows else (" ", "\t"))):
        yield f"leading {space!r}", space + valid
        yield f"trailing {space!r}", valid + space
    yield "trailing NUL", valid + "\x00"
    yield "leading NUL", "\x00" + valid
    yield "inner NUL", valid[:3] + "\x00" + valid[4:]
    digit_at = next((i for i, c in enumerate(valid) if c in "0123456789"), None)
    if digit_at is not None:
        for script, zero in _OTHER_DIGITS.items():
            other = chr(zero + int(valid[digit_at]))
            yield f"{script} digit", valid[:digit_at] + other + valid[digit_at + 1 :]
        yield "superscript digit", valid[:digit_at] + "\u00b2" + valid[digit_at + 1 :]
    yield "zero-width space", valid[:2] + "\u200b" + valid[2:]


def _accepts(check: Callable[[str], object]) -> Callable[[str], bool]:
    def accepts(value: str) -> bool:
        try:
            result = check(value)
        except (ValueError, errors.RegistryError):
            return False
        return result is not False and result is not None

    return accepts


VALIDATORS: dict[str, tuple[Callable[[str], bool], list[str], bool]] = {
    "IHI": (_accepts(parse_ihi), ["8003608166690503"], False),
    "HPI-I": (_accepts(parse_hpii), ["8003611234567893"], False),
    "purpose of use": (_accepts(parse_purpose), ["TREAT", "ETREAT", f"{PURPOSE_SYSTEM}|HRESCH"], False),
    "security label": (_accepts(parse_label), ["PSY", "R", "HIV"], False),
    "service ID": (
        _accepts(parse_service_id),
        ["0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5bd9cb469fa16570867728950e", "01HZY3K5QW8X2V9T6R4M0N7P1S"],
        False,
    ),
    "bound service (CLI)": (_accepts(check_bound_service), ["0f8fad5b-d9cb-469f-a165-70867728950e"], False),
    "scope": (_accepts(lambda v: is_scope(v) or None), ["system/Basic.rs", "system/*.cruds", "admin"], False),
    "audit patient": (_accepts(parse_patient), ["8003608166690503", f"{IHI_SYSTEM}|8003608166690503"], False),
    "audit date": (_accepts(lambda v: date_bounds([v])), ["2024", "ge2024-05-01", "2024-05-01T10:00:00Z"], False),
    "broker date": (_accepts(parse_range), ["2024", "2024-05-01", "2024-05-01T10:00:00+10:00"], True),
    "duration": (_accepts(parse_duration), ["5s", "250ms", "2h"], True),
    "Retry-After": (lambda v: parse_retry_after(v) is not None, ["120"], True),
    "header number": (lambda v: ascii_int(v) is not None, ["120", "0"], False),
    "HPI-O": (_accepts(parse_hpio), ["8003621566684455"], False),
    "Idempotency-Key": (_accepts(parse_key), ['"scan-42"', "scan-42", '"scan 42"'], True),
    "batch idempotencyKey": (is_item_key, ["scan-42", "scan 42"], False),
    "record age": (_accepts(parse_age), ["365d", "12h", "2w"], False),
    "contact email": (
        _accepts(lambda v: check_organisation(Organisation(contact_email=v))),
        ["pacs@harbour.example"],
        True,
    ),
    "contact phone": (_accepts(lambda v: check_organisation(Organisation(contact_phone=v))), ["+61 2 5550 1234"], True),
    "capability statement URL": (
        _accepts(lambda v: check_organisation(Organisation(capability_statement_url=v))),
        ["https://pacs.example.test/fhir/metadata"],
        True,
    ),
}
"""Each validator as ``accepts(text) -> bool``, values it must accept, and whether spaces around them are OWS."""


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_validators_refuse_every_smuggled_variant(name: str) -> None:
    """Each validator accepts its valid values and refuses every whitespace, newline, NUL and foreign-digit variant."""
    accepts, valid_values, ows = VALIDATORS[name]
    for valid in valid_values:
        assert accepts(valid), f"{name} refuses the valid {valid!r}"
        let_through = [(how, value) for how, value in smuggled(valid, ows=ows) if accepts(value)]
        assert not let_through, f"{name} accepts {let_through}"


def test_uuid_spellings_that_uuid_module_reads_are_refused() -> None:
    """Service IDs are hex in the two canonical layouts only: no braces, URNs, underscores, signs or moved hyphens."""
    canonical = "0f8fad5b-d9cb-469f-a165-70867728950e"
    for value in (
        "{0f8fad5b-d9cb-469f-a165-70867728950e}",
        "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        "0f8fad5b_d9cb_469f_a165_70867728950e",
        "0f8fad5bd9cb-469f-a165-70867728950e-",
        "-0f8fad5bd9cb469fa16570867728950e---",
        "+f8fad5bd9cb469fa16570867728950e",
    ):
        with pytest.raises(InvalidValueError):
            parse_service_id(value)
    assert parse_service_id(canonical.upper()) == canonical


def test_date_with_foreign_digits_is_not_a_date() -> None:
    """A FHIR date spelled with Arabic-Indic digits is refused (``int`` would read it)."""
    with pytest.raises(InvalidDate):
        parse_range("".join(chr(0x0660 + int(c)) for c in "2024"))


# --- The HTTP edges -----------------------------------------------------------------------------


async def test_ihi_with_a_trailing_newline_in_a_path_is_422(gateway_client: GatewayClient) -> None:
    """``PUT`` and ``GET`` of ``…/{IHI}%0A/…`` are 422 naming the IHI, never 500 and never an echo."""
    ihi = make_ihi()
    put = await gateway_client.http.put(f"/registry/records/{ihi}%0A/{gateway_client.service_id}", json={})
    assert put.status_code == 422
    get = await gateway_client.http.get(f"/registry/records/{ihi}%0A")
    assert get.status_code == 422
    history = await gateway_client.http.get(f"/registry/records/%20{ihi}/history")
    assert history.status_code == 422


async def test_service_id_with_foreign_digits_in_a_path_is_422(gateway_client: GatewayClient) -> None:
    """A service ID whose digits are full-width is 422, although ``uuid.UUID`` would read it."""
    sid = gateway_client.service_id
    wide = "".join(chr(0xFF10 + int(c)) if c.isascii() and c.isdigit() else c for c in sid)
    response = await gateway_client.http.put(f"/registry/records/{make_ihi()}/{wide}", json={})
    assert response.status_code == 422


@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
async def test_batch_with_smuggled_identifiers_stores_its_valid_items(
    gateway_client: GatewayClient, media: str
) -> None:
    """Every smuggled IHI or service ID in a batch is its own item error; the valid items are stored."""
    sid = gateway_client.service_id
    valid = [make_ihi() for _ in range(3)]
    bad = [{"ihi": value, "serviceId": sid} for _how, value in smuggled(make_ihi())]
    bad += [{"ihi": make_ihi(), "serviceId": value} for _how, value in smuggled(sid)]
    items = [{"ihi": valid[0], "serviceId": sid}, *bad, {"ihi": valid[1], "serviceId": sid}]
    items.append({"ihi": valid[2], "serviceId": sid})
    if media == "application/json":
        body = msgspec.json.encode(items)
    else:
        body = b"\n".join(msgspec.json.encode(item) for item in items)
    response = await gateway_client.http.post("/registry/records:batch", content=body, headers={"content-type": media})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["result"] for r in results] == ["created", *(["error"] * len(bad)), "created", "created"]
    for ihi in valid:
        found = (await gateway_client.http.get(f"/registry/records/{ihi}")).json()["records"]
        assert [r["serviceId"] for r in found] == [sid]


async def test_fhir_basic_with_a_smuggled_ihi_is_422(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A RegistryRecord whose IHI value ends in a newline is 422, not stored."""
    ihi = make_ihi()
    for _how, value in smuggled(ihi):
        body = fixture("Basic-RegistryRecord-minimal.json", ihi=ihi, service_id=gateway)
        body["subject"]["identifier"]["value"] = value
        response = await fhir.post("/fhir/Basic", json=body)
        assert response.status_code == 422, value
    assert (await fhir.get(f"/registry/records/{ihi}")).json()["records"] == []


async def test_a_smuggled_purpose_or_practitioner_header_is_422(client: httpx.AsyncClient) -> None:
    """``IEF-Purpose-Of-Use`` and ``IEF-On-Behalf-Of`` values with a smuggled character are 422
    ``invalid-privacy-context`` (never taken as another code or HPI-I); the valid values are taken."""
    ihi = make_ihi()
    for header, valid in ((b"ief-purpose-of-use", "TREAT"), (b"ief-on-behalf-of", make_hpii())):
        assert (await client.get(f"/registry/records/{ihi}", headers={header: valid.encode()})).status_code == 200
        sent = 0
        for how, value in smuggled(valid, ows=True):
            try:
                response = await client.get(f"/registry/records/{ihi}", headers={header: value.encode()})
            except httpx.LocalProtocolError:
                continue  # a byte no HTTP/1.1 header may carry (CR, LF, NUL, other controls): cannot be sent
            assert response.status_code == 422, (header, how, response.text)
            assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid-privacy-context"
            sent += 1
        assert sent >= 5, f"only {sent} variants of {header!r} could be sent"


async def test_unsafe_request_id_is_replaced(anonymous: httpx.AsyncClient) -> None:
    """An ``X-Request-Id`` with a byte outside the safe ASCII set is not echoed; the server makes its own."""
    for sent in (b"abc\xe9", b"abc\xef\xbc\x91", b"abc def"):
        response = await anonymous.get("/health/live", headers={b"x-request-id": sent})
        assert response.headers["x-request-id"].encode() != sent
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    kept = await anonymous.get("/health/live", headers={"x-request-id": "client-42"})
    assert kept.headers["x-request-id"] == "client-42"


# --- The class, in the source -------------------------------------------------------------------


def _project_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _pattern_literals(tree: ast.AST) -> Iterator[tuple[int, str | bytes, bool]]:
    """Every literal pattern given to ``re.compile``/``match``/``search``/…: line, text, whether ``re.ASCII`` is set."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "re"):
            continue
        if node.func.attr not in {"compile", "match", "search", "fullmatch", "sub", "split", "findall", "finditer"}:
            continue
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str | bytes):
            flags = ast.unparse(node)
            yield node.lineno, node.args[0].value, "ASCII" in flags or isinstance(node.args[0].value, bytes)


def _without_classes(pattern: str | bytes) -> str:
    """The pattern with its character classes left out (a ``$`` inside ``[…]`` is a dollar sign)."""
    text = pattern if isinstance(pattern, str) else pattern.decode("latin-1")
    return re.sub(r"\[(?:\\.|[^\]\\])*\]", "", text)


def test_no_pattern_ends_with_a_dollar_anchor() -> None:
    """No regex in the project uses ``$``, which matches before a trailing newline: validators use ``fullmatch``."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _project_files()
        for line, pattern, _ascii in _pattern_literals(ast.parse(path.read_text(encoding="utf-8")))
        if re.search(r"(?<!\\)\$", _without_classes(pattern))
    ]
    assert not found, f"patterns with $: {found}"


def test_no_pattern_uses_unicode_classes() -> None:
    """No regex uses ``\\d`` or ``\\w`` without ``re.ASCII``: they match digits and letters of every script."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _project_files()
        for line, pattern, ascii_only in _pattern_literals(ast.parse(path.read_text(encoding="utf-8")))
        if not ascii_only and re.search(r"\\[dwDW]", pattern if isinstance(pattern, str) else "")
    ]
    assert not found, f"patterns with Unicode classes: {found}"


def test_no_code_asks_str_isdigit() -> None:
    """``isdigit``/``isdecimal``/``isnumeric`` are used only inside ``schemas.types.is_ascii_digits``."""
    found = []
    for path in _project_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"isdigit", "isdecimal", "isnumeric"}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [f"schemas/types.py:{_line_of('schemas/types.py', 'return text.isascii() and text.isdigit()')}"]


def _line_of(relative: str, text: str) -> int:
    lines = (ROOT / relative).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_every_match_call_is_a_full_match() -> None:
    """Compiled patterns are applied with ``fullmatch`` (or ``search``/``sub``/``split``), never ``.match``."""
    found = []
    for path in _project_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "match":
                owner = ast.unparse(node.func.value)
                if owner == "re" or owner.lstrip("_").isupper():
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, f".match calls: {found}"


def test_service_ids_made_by_the_factory_pass() -> None:
    """The factory's service IDs are canonical (the refusals above are not refusing everything)."""
    for _ in range(100):
        sid = make_service_id()
        assert parse_service_id(sid) == sid
