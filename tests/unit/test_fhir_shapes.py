"""FHIR shapes without a server: definitions, the statement builder, the RegistryRecord round trip, search semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from registry import errors
from registry.config import FhirSettings, Settings
from registry.fhir.conformance import CONFORMANCE
from registry.fhirapi.search import Criteria, SearchQuery, ihi_token, string_prefix
from registry.server.app import Features
from schemas.fhir.canonical import Canonicals
from schemas.fhir.capability import Operation, ResourceCapability, capability_statement
from schemas.fhir.definitions import conformance_resources
from schemas.fhir.parse import InvalidResource, NotJson, expression, load_resource
from schemas.fhir.record import read_registry_record, registry_record
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import FhirResponseError, check_fhir_response, parse_resource

CANON = Canonicals("https://registry.example.org/fhir")


@pytest.mark.parametrize("base", ["https://ief-registry.org/fhir", "https://registry.example.org/fhir"])
def test_every_definition_parses_as_r4b(base: str) -> None:
    """Every published conformance resource is valid R4B, whatever the canonical base."""
    resources = conformance_resources(Canonicals(base), "1.2.3")
    assert (
        len(resources) == 41
    )  # 22 StructureDefinitions, 8 CodeSystems, 8 ValueSets, 2 SearchParameters, 1 OperationDefinition
    for resource in resources:
        parse_resource(resource)
        assert resource["url"].startswith(base)


def test_statement_renders_operations_and_parses() -> None:
    """A declared operation appears in the statement (canonical resolved), and the statement is valid R4B."""
    locate = ResourceCapability(
        "Patient",
        "Where a patient's imaging is.",
        ("search-type",),
        operations=(Operation("locate", "OperationDefinition/locate", "Locate the patient's imaging."),),
    )
    capabilities = (*Features.of(Settings()).capabilities, *CONFORMANCE, locate)
    statement = capability_statement(
        capabilities, canon=CANON, software_version="0.1.0", base_url="https://r.example/fhir",
        token_url="https://r.example/auth/token", date=datetime.now(UTC),  # noqa: S106 - a URL, not a password
    )  # fmt: skip
    patient = statement["rest"][0]["resource"][-1]
    assert patient["operation"] == [
        {
            "name": "locate",
            "definition": f"{CANON.base}/OperationDefinition/locate",
            "documentation": "Locate the patient's imaging.",
        }
    ]
    parse_resource(statement)


def test_registry_record_round_trip() -> None:
    """A record rendered as RegistryRecord reads back as the same claim."""
    ihi, service_id = make_ihi(), make_service_id()
    resource = registry_record(
        CANON, record_id="3f8a", ihi=ihi, service_id=service_id, status="archived", type_="registry", version=4,
        last_updated=datetime.now(UTC),
    )  # fmt: skip
    claim = read_registry_record(msgspec.json.encode(resource), CANON)
    assert (claim.id, claim.ihi, claim.service_id, claim.status, claim.type) == (
        "3f8a",
        ihi,
        service_id,
        "archived",
        "registry",
    )
    assert claim.service_expression == "Basic.extension[0].valueIdentifier.value"


def test_load_resource_refuses_what_is_not_a_resource() -> None:
    """Not JSON is NotJson; another type, or invalid elements, is InvalidResource with FHIRPath-like expressions."""
    with pytest.raises(NotJson):
        load_resource(b"{", "Basic")
    with pytest.raises(InvalidResource) as other:
        load_resource(b'{"resourceType": "Patient"}', "Basic")
    assert other.value.issues == [("expected a Basic resource, got Patient", "resourceType")]
    with pytest.raises(InvalidResource) as invalid:
        load_resource(
            b'{"resourceType": "Basic", "code": {"text": "x"}, "extension": [{"url": "u", "valueCode": 5}]}', "Basic"
        )
    assert [where for _, where in invalid.value.issues] == ["Basic.extension[0].valueCode"]


def test_expression_writes_indices_and_names() -> None:
    """Locations become FHIRPath-like expressions."""
    assert expression("Basic", ("extension", 1, "valueCode")) == "Basic.extension[1].valueCode"
    assert expression("Basic", ()) == "Basic"


def test_criteria_read_commas_as_or_and_repeats_as_and() -> None:
    """Comma alternatives are OR, repeated parameters AND; an escaped comma is part of the value."""
    parse = {"name": lambda _n, text: text}
    assert Criteria([("name", "a,b"), ("name", "b,c")]).any_of(parse) == {"b"}
    assert Criteria([("name", r"Smith\, John")]).any_of(parse) == {"Smith, John"}
    assert Criteria([("other", "x")]).any_of(parse) is None
    with pytest.raises(errors.MalformedRequest):
        Criteria([("name", "a"), ("name", "b")]).any_of(parse, once=True)


def test_ihi_token_accepts_system_aliases_and_bare_values() -> None:
    """An IHI token may carry either accepted IHI system, or none; any other system is refused."""
    ihi = make_ihi()
    assert ihi_token("patient.identifier", f"{IHI_SYSTEM}|{ihi}") == ihi
    assert ihi_token("patient.identifier", f"http://ns.electronichealth.net.au/id/ihi/1.0|{ihi}") == ihi
    assert ihi_token("patient.identifier", ihi) == ihi
    with pytest.raises(errors.InvalidInput):
        ihi_token("patient.identifier", f"|{ihi}")


def test_string_prefix_escapes_like_wildcards() -> None:
    """A name value becomes a prefix pattern in which %, _ and backslash are literal."""
    assert string_prefix("name", r"50%_a\b") == r"50\%\_a\\b%"


def test_search_links_keep_the_criteria() -> None:
    """Links repeat the criteria with the page's _count and _offset; next only when more remain."""
    query = SearchQuery(
        [("patient", "1"), ("_count", "2"), ("_offset", "2")], FhirSettings(default_count=10, max_count=5)
    )
    links = dict(query.links("https://r/fhir/Basic", total=5))
    assert links == {
        "self": "https://r/fhir/Basic?patient=1&_count=2&_offset=2",
        "next": "https://r/fhir/Basic?patient=1&_count=2&_offset=4",
        "previous": "https://r/fhir/Basic?patient=1&_count=2&_offset=0",
    }
    assert SearchQuery([("_count", "99")], FhirSettings(default_count=10, max_count=5)).count == 5


async def test_response_check_fails_on_invalid_fhir() -> None:
    """The tests' response hook fails on an invalid resource, and on a FHIR route that does not answer FHIR JSON."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/fhir/plain":
            return httpx.Response(200, json={"resourceType": "Basic", "code": {"text": "x"}})
        return httpx.Response(
            200, content=b'{"resourceType": "Basic", "colour": 1}', headers={"content-type": "application/fhir+json"}
        )

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), base_url="http://test", event_hooks={"response": [check_fhir_response]}
    ) as client:
        with pytest.raises(FhirResponseError, match="invalid Basic"):
            await client.get("/anything")
        with pytest.raises(FhirResponseError, match="not application/fhir"):
            await client.get("/fhir/plain")
