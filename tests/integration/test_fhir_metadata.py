"""The CapabilityStatement and the published conformance resources, held to the routes they describe."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from registry import __version__
from registry.auth.scopes import satisfies
from registry.config import FhirSettings, LogSettings, Settings
from registry.route import route_spec
from registry.server.app import create_app
from schemas.discovery import GatewayProblem
from tests.factories import make_ihi, make_service_id
from tests.fhir import BASE, check_fhir_response, extension, record_body
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

_ROUTED = {
    ("GET", False): "search-type",
    ("GET", True): "read",
    ("POST", False): "create",
    ("PUT", True): "update",
    ("PUT", False): "conditional-update",
    ("DELETE", True): "delete",
}
_SCOPES = {
    ("Basic", "GET"): ("system/Basic.rs",),
    ("Basic", "POST"): ("system/Basic.cu",),
    ("Basic", "PUT"): ("system/Basic.cu",),
    ("Endpoint", "GET"): ("system/Endpoint.rs",),
    ("Endpoint", "POST"): ("admin",),
    ("Endpoint", "PUT"): ("admin",),
    ("Organization", "GET"): ("system/Endpoint.rs",),
    ("Group", "GET"): ("system/Group.rs",),
    ("Group", "POST"): ("system/Group.cu",),
    ("Group", "PUT"): ("system/Group.cu",),
    ("ImagingStudy", "GET"): ("system/ImagingStudy.rs",),
    ("DocumentReference", "GET"): ("system/DocumentReference.rs",),
    ("Patient", "GET"): ("system/Basic.rs", "system/Endpoint.rs"),
    ("Patient", "POST"): ("system/Basic.rs", "system/Endpoint.rs"),
    ("AuditEvent", "GET"): ("system/AuditEvent.rs",),
    ("Consent", "GET"): ("system/Consent.rs",),
    ("Consent", "POST"): ("system/Consent.cu",),
    ("Consent", "PUT"): ("system/Consent.cu",),
}
_SUBSCRIPTION_SCOPES = {
    "search-type": ("system/Subscription.s",),
    "read": ("system/Subscription.r",),
    "create": ("system/Subscription.c",),
    "update": ("system/Subscription.u",),
    "delete": ("system/Subscription.d",),
    "operation": ("system/Subscription.r",),
}
_GENERAL = {"_format", "_pretty", "_summary", "_elements", "_total"}
"""Taken by every FHIR route (the statement lists _summary, _elements and _total on every search)."""
_TOPIC = "SubscriptionTopic"
"""Served at the topic's canonical URL; R4 has no SubscriptionTopic type, so the statement names it by extension."""


def _interaction(method: str, parts: list[str]) -> str:
    """The interaction (or ``operation``) a FHIR route performs; ``parts`` follow ``/fhir``."""
    if any(part.startswith("$") for part in parts):
        return "operation"
    if "_history" in parts:
        return "history-type" if parts[1] == "_history" else "history-instance" if len(parts) == 3 else "vread"
    return _ROUTED[(method, len(parts) == 2)]


def _fhir_handlers() -> list[tuple[str, str, Any]]:
    """(path, method, handler) of every FHIR route of the app as ``create_app`` wires it."""
    app = create_app(
        Settings(), database_url="postgresql://unused/none", service_id=make_service_id(), hash_key=b"test-hash-key"
    )
    found = []
    for route in app.routes:
        if not route.path.startswith("/fhir"):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                found.append((route.path, method, handler))
    return found


def _rebased(resource: dict[str, Any], base: str) -> dict[str, Any]:
    """The resource with the default canonical base replaced by ``base`` everywhere."""
    return msgspec.json.decode(msgspec.json.encode(resource).replace(BASE.encode(), base.encode()))  # type: ignore[no-any-return]


def _base_name(query_name: str) -> str:
    """``subject:identifier`` and ``patient.identifier`` search by ``subject`` and ``patient``."""
    return query_name.split(":", maxsplit=1)[0].split(".", maxsplit=1)[0]


async def test_capability_statement_describes_the_server(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """GET /fhir/metadata is an R4 instance CapabilityStatement for this server's FHIR base, JSON only."""
    response = await fhir.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert (statement["fhirVersion"], statement["format"], statement["kind"]) == ("4.0.1", ["json"], "instance")
    assert statement["software"] == {"name": "ief-registry", "version": __version__}
    assert statement["implementation"]["url"] == f"{server.base_url}/fhir"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert list(resources) == [
        "Endpoint",
        "Organization",
        "Basic",
        "Patient",
        "ImagingStudy",
        "DocumentReference",
        "AuditEvent",
        "Consent",
        "Subscription",
        "Group",
        "StructureDefinition",
        "CodeSystem",
        "ValueSet",
        "SearchParameter",
        "OperationDefinition",
    ]
    assert resources["Basic"]["profile"] == f"{BASE}/StructureDefinition/RegistryRecord"
    assert resources["Basic"]["conditionalUpdate"] is True
    assert resources["Basic"]["versioning"] == "versioned-update"
    assert resources["Endpoint"]["conditionalUpdate"] is False
    interactions = {name: {i["code"] for i in resources[name]["interaction"]} for name in ("Endpoint", "Group")}
    assert interactions == {
        "Endpoint": {"read", "search-type", "create", "update"},
        "Group": {"read", "create", "update"},
    }
    assert {i["code"] for i in resources["Organization"]["interaction"]} == {"read", "search-type"}
    assert resources["Patient"]["operation"] == [
        {
            "name": "locate",
            "definition": f"{BASE}/OperationDefinition/Patient-locate",
            "documentation": resources["Patient"]["operation"][0]["documentation"],
        }
    ]
    assert "interaction" not in resources["Patient"]


async def test_capability_statement_lists_exactly_the_routes(fhir: httpx.AsyncClient) -> None:
    """Each FHIR route is an interaction the statement lists and back; searches take exactly the listed parameters."""
    statement = (await fhir.get("/fhir/metadata")).json()
    declared: dict[str, set[str]] = {}
    declared_params: dict[str, set[str]] = {}
    conditional_create = {r["type"] for r in statement["rest"][0]["resource"] if r.get("conditionalCreate")}
    for resource in statement["rest"][0]["resource"]:
        interactions = {i["code"] for i in resource.get("interaction", [])}
        interactions |= {f"${op['name']}" for op in resource.get("operation", [])}
        if resource["conditionalUpdate"]:
            interactions.add("conditional-update")
        declared[resource["type"]] = interactions
        declared_params[resource["type"]] = {p["name"] for p in resource.get("searchParam", [])}
    routed: dict[str, set[str]] = {}
    routed_params: dict[str, set[str]] = {}
    declared_operations = {
        resource["type"]: {op["name"] for op in resource.get("operation", [])}
        for resource in statement["rest"][0]["resource"]
    }
    for path, method, handler in _fhir_handlers():
        parts = path.split("/")[2:]
        if parts in (["metadata"], []) or parts[0] in (_TOPIC, ".well-known"):
            continue
        interaction = _interaction(method, parts)
        if interaction == "operation":  # its parameters are in its OperationDefinition
            assert parts[-1].removeprefix("$") in declared_operations[parts[0]], path
            routed.setdefault(parts[0], set()).add(parts[-1])
            continue
        routed.setdefault(parts[0], set()).add(interaction)
        accepted = {_base_name(name) for name in route_spec(handler).query} - _GENERAL
        if interaction in ("history-type", "history-instance"):
            assert accepted == {"_since", "_count", "_offset"}, path
        elif interaction == "search-type":
            routed_params[parts[0]] = accepted
        elif interaction == "conditional-update" or (interaction == "create" and parts[0] in conditional_create):
            # conditions: the search's parameters, strictly
            assert accepted <= declared_params[parts[0]], path
            assert not route_spec(handler).lenient, path
        else:
            assert accepted == set(), (path, method)
    assert routed == declared
    assert routed_params == {
        kind: params - _GENERAL for kind, params in declared_params.items() if "search-type" in declared[kind]
    }
    assert all(params >= {"_summary", "_elements"} for kind, params in declared_params.items() if kind in routed_params)


def test_every_fhir_route_declares_what_it_needs() -> None:
    """Each FHIR route declares its scopes (Basic read/write, Endpoint) or is public (metadata, definitions)."""
    for path, method, handler in _fhir_handlers():
        parts = path.split("/")[2:] or ["(base)"]
        kind = parts[0]
        expected: tuple[str, ...] | None
        if kind == "Subscription":
            expected = _SUBSCRIPTION_SCOPES[_interaction(method, parts)]
        else:
            expected = _SCOPES.get((kind, method))
        if expected is None:
            assert route_spec(handler).public, (path, method)
            assert not route_spec(handler).scopes
        else:
            assert route_spec(handler).scopes == expected, (path, method)
            assert all(
                not satisfies(frozenset(), scope) for scope in expected
            )  # valid requirements, not met by nothing


async def test_every_conformance_resource_is_published_and_readable(fhir: httpx.AsyncClient) -> None:
    """Each conformance type lists its resources under the canonical base; each reads back by id (and parses)."""
    expected = {
        "StructureDefinition": 22,
        "CodeSystem": 8,
        "ValueSet": 8,
        "SearchParameter": 2,
        "OperationDefinition": 1,
    }
    for kind, count in expected.items():
        bundle = (await fhir.get(f"/fhir/{kind}")).json()
        assert bundle["total"] == count, kind
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert resource["url"] == f"{BASE}/{kind}/{resource['id']}"
            assert resource["version"] == __version__
            read = await fhir.get(f"/fhir/{kind}/{resource['id']}")
            assert read.json() == resource


async def test_every_url_a_record_uses_is_published(fhir: httpx.AsyncClient, gateway: str) -> None:
    """The profile, extension, code system and identifier system URLs of a stored record all resolve here."""
    record = (await fhir.post("/fhir/Basic", json=record_body(make_ihi(), gateway))).json()
    urls = [("StructureDefinition", record["meta"]["profile"][0])]
    urls += [("StructureDefinition", ext["url"]) for ext in record["extension"]]
    urls += [("CodeSystem", record["code"]["coding"][0]["system"])]
    for kind, url in urls:
        bundle = (await fhir.get(f"/fhir/{kind}", params={"url": url})).json()
        assert bundle["total"] == 1, url
    service_ext = (await fhir.get("/fhir/StructureDefinition/registry-record-service")).json()
    value = service_ext["differential"]["element"][-1]
    assert (
        value["patternIdentifier"]["system"]
        == extension(record, "registry-record-service")["valueIdentifier"]["system"]
    )


async def test_code_systems_hold_exactly_the_accepted_codes(fhir: httpx.AsyncClient) -> None:
    """The status and type code systems list exactly the codes records accept, and the value sets include them."""
    for system_id, codes in [
        ("registry-record-status", ["active", "removed", "archived"]),
        ("registry-record-type", ["record", "registry"]),
        ("service-kind", ["gateway", "registry"]),
        ("search-style", ["ief", "harmony"]),
        ("broker-outcome", [str(problem) for problem in GatewayProblem]),
    ]:
        code_system = (await fhir.get(f"/fhir/CodeSystem/{system_id}")).json()
        assert [c["code"] for c in code_system["concept"]] == codes
        value_set = (await fhir.get(f"/fhir/ValueSet/{system_id}")).json()
        assert value_set["compose"]["include"] == [{"system": code_system["url"]}]


async def test_search_by_url_and_version(fhir: httpx.AsyncClient) -> None:
    """url|version matches only that version; an unknown URL matches nothing; an unknown id is 404."""
    url = f"{BASE}/StructureDefinition/RegistryRecord"
    assert (await fhir.get("/fhir/StructureDefinition", params={"url": f"{url}|{__version__}"})).json()["total"] == 1
    assert (await fhir.get("/fhir/StructureDefinition", params={"url": f"{url}|0.0.0"})).json()["total"] == 0
    assert (await fhir.get("/fhir/CodeSystem", params={"url": url})).json()["total"] == 0
    missing = await fhir.get("/fhir/StructureDefinition/NoSuchProfile")
    assert missing.status_code == 404


async def test_operations_take_the_parameters_their_definitions_declare(fhir: httpx.AsyncClient) -> None:
    """Each operation route accepts exactly the input parameters of its OperationDefinition (ours are served here;
    the Subscriptions backport IG publishes its own)."""
    statement = (await fhir.get("/fhir/metadata")).json()
    operations = {
        (resource["type"], f"${op['name']}"): op["definition"]
        for resource in statement["rest"][0]["resource"]
        for op in resource.get("operation", [])
    }
    routes = {
        (path.split("/")[2], path.split("/")[-1]): handler
        for path, _, handler in _fhir_handlers()
        if path.split("/")[-1].startswith("$")
    }
    assert set(routes) == set(operations)
    for key, canonical in operations.items():
        if not canonical.startswith(BASE):
            assert canonical.startswith("http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"), key
            continue
        definition = (await fhir.get("/fhir/OperationDefinition", params={"url": canonical})).json()["entry"][0]
        inputs = {p["name"] for p in definition["resource"]["parameter"] if p["use"] == "in"}
        assert route_spec(routes[key]).query - _GENERAL == inputs, key


@pytest.mark.slow
async def test_canonical_base_is_configurable(template: TestCluster) -> None:
    """With another canonical base, the statement, the definitions and the records all use it, and writes need it."""
    base = "https://registry.example.gov.au/fhir"
    settings = Settings(log=LogSettings(access=False), fhir=FhirSettings(canonical_base=base + "/"))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        service_id = make_service_id()
        await server.add_service(service_id)
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers=await server.headers("admin"),
            event_hooks={"response": [check_fhir_response]},
        ) as fhir:
            statement = (await fhir.get("/fhir/metadata")).json()
            basic = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Basic")
            assert basic["profile"] == f"{base}/StructureDefinition/RegistryRecord"
            default_urls = await fhir.post("/fhir/Basic", json=record_body(make_ihi(), service_id))
            assert default_urls.status_code == 422
            body = _rebased(record_body(make_ihi(), service_id), base)
            created = await fhir.post("/fhir/Basic", json=body)
            assert created.status_code == 201
            assert created.json()["meta"]["profile"] == [f"{base}/StructureDefinition/RegistryRecord"]
            read = await fhir.get("/fhir/StructureDefinition/registry-record-status")
            assert read.json()["url"] == f"{base}/StructureDefinition/registry-record-status"
