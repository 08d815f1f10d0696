"""Server-side request forgery: URLs that lead this server to local addresses, in clear, or where a member chooses.

One address policy (``registry.outbound.egress``) stands in front of every outbound call: member gateway
and registry base URLs, JWKS URLs, token endpoints and webhook endpoints. It refuses loopback,
private, link-local, site-local, multicast, unspecified and reserved addresses, and every IPv6 form
that embeds or maps to such an IPv4 address; plain http outside dev mode except on loopback; and
TLS below 1.2. It is applied when a URL is accepted and again at every connection (the name is
resolved, each address checked, the checked address connected to), so a DNS answer that changes
later cannot slip through. A member's discovery document cannot send this registry's signed
client assertion elsewhere than the member's own origin, and no internal URL or upstream answer
reaches a consumer.
"""

from __future__ import annotations

import ast
import asyncio
import ipaddress
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from registry import errors
from registry.auth.remote import new_http_client
from registry.config import AuthSettings, BrokerSettings, LogSettings, OutboundSettings, Settings
from registry.outbound.egress import AddressPolicy, AddressRefused, ResolutionFailed, is_public, refusal, tls_context
from tests.auth import assertion, request_token
from tests.factories import IHI_SYSTEM, LOOPBACK_NETWORKS, make_ihi, make_rsa_key, make_service_id
from tests.federation.network import directory
from tests.gateway import ReferenceGateway, reference_gateway
from tests.pg import TestCluster
from tests.server import RunningServer, asgi_server, running_server
from tests.subscriptions.helpers import subscription_body

ROOT = Path(__file__).resolve().parents[2]

LOCAL = [
    # IPv4: loopback, private, link-local (cloud metadata), shared (CGNAT), unspecified, multicast, reserved,
    # documentation and benchmarking ranges.
    "127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1",  # noqa: S104 - an address refused, not bound "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "192.0.0.8",
    # IPv6 itself: loopback, unspecified, link-local, unique local, site-local, multicast, discard, documentation.
    "::1", "::", "fe80::1", "fd00:ec2::254", "fec0::1", "ff02::1", "100::1", "2001:db8::1",
    # IPv4-mapped and IPv4-compatible forms of local addresses.
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::7f00:1", "::a9fe:a9fe",
    # NAT64 (well-known prefix) embedding local addresses, and the local-use NAT64 prefix.
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b::c0a8:1", "64:ff9b:1::8.8.8.8",
    # 6to4 embedding local addresses.
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:a00:1::", "2002:c0a8:1::1",
    # Teredo (both embedded addresses).
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:7f00:1::1",
]  # fmt: skip
"""Addresses this server must never call (unless an operator allows them)."""

PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"]
"""Public addresses, in the same forms, that it may call."""


@pytest.mark.parametrize("address", LOCAL)
def test_local_addresses_in_every_form_are_refused(address: str) -> None:
    """Each local or reserved address, and each IPv6 form embedding or mapping to one, is refused outside dev mode."""
    ip = ipaddress.ip_address(address)
    assert not is_public(ip)
    assert not AddressPolicy(dev=False).address_allowed("example.org", ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_in_every_form_are_allowed(address: str) -> None:
    """Public addresses pass, including the NAT64, 6to4 and mapped forms of a public IPv4 address."""
    assert AddressPolicy(dev=False).address_allowed("example.org", ipaddress.ip_address(address))


def test_allow_lists_and_dev_mode() -> None:
    """Allow-listed hosts and networks pass (embedded IPv4 included); dev mode allows any address."""
    loopback = ipaddress.ip_address("127.0.0.1")
    assert AddressPolicy(dev=False, allowed_hosts="gw.internal").address_allowed("gw.internal", loopback)
    assert not AddressPolicy(dev=False, allowed_hosts="gw.internal").address_allowed("other", loopback)
    hospital = AddressPolicy(dev=False, allowed_networks="10.0.0.0/8")
    assert hospital.address_allowed("x", ipaddress.ip_address("10.9.8.7"))
    assert hospital.address_allowed("x", ipaddress.ip_address("64:ff9b::a09:807"))
    assert not hospital.address_allowed("x", loopback)
    assert AddressPolicy(dev=True).address_allowed("x", loopback)


@pytest.mark.parametrize(
    ("url", "dev", "allowed"),
    [
        ("https://gateway.example/fhir", False, True),
        ("http://gateway.example/fhir", False, False),
        ("http://gateway.example/fhir", True, True),
        ("http://127.0.0.1:8080/fhir", False, True),
        ("http://localhost:8080/fhir", False, True),
        ("http://[::1]:8080/fhir", False, True),
        ("http://10.0.0.5/fhir", False, False),
        ("https://user:secret@gateway.example/fhir", False, False),
        ("ftp://gateway.example/fhir", True, False),
        ("gateway.example/fhir", True, False),
        ("https://[::1/fhir", True, False),
    ],
)
def test_urls_need_tls_outside_dev_mode_except_on_loopback(url: str, dev: bool, allowed: bool) -> None:
    """https only outside dev mode (plain http on loopback, where nothing leaves the machine); no credentials."""
    policy = AddressPolicy(dev=dev)
    if allowed:
        assert policy.check_url(url).scheme in ("http", "https")
    else:
        with pytest.raises(AddressRefused):
            policy.check_url(url)


async def test_names_are_resolved_and_every_address_checked() -> None:
    """``localhost`` is refused by what it resolves to; a name that does not resolve is a resolution failure."""
    with pytest.raises(AddressRefused):
        await AddressPolicy(dev=False).check("https://localhost/x")
    with pytest.raises(ResolutionFailed):
        await AddressPolicy(dev=False).check("https://no-such-host.invalid/x")
    assert (await AddressPolicy(dev=False, allowed_hosts="localhost").check("https://localhost:8443/x")).port == 8443


# --- When a URL is accepted ---------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A server with the default outbound policy (nothing local allowed) and short broker bounds."""
    auth = AuthSettings(
        client_cache_seconds=0, rate_per_second=10_000, rate_burst=10_000, failure_rate_per_second=10_000,
        failure_burst=10_000,
    )  # fmt: skip
    broker = BrokerSettings(gateway_timeout=1.5, deadline=2.5)
    settings = Settings(log=LogSettings(access=False), auth=auth, broker=broker)
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        yield server


def _local_urls(path: str) -> Iterator[str]:
    for address in LOCAL:
        host = f"[{address}]" if ":" in address else address
        yield f"https://{host}{path}"
    yield f"https://localhost{path}"
    yield f"http://gateway.example{path}"


async def test_member_base_urls_and_token_endpoints_are_checked_when_added(strict: RunningServer) -> None:
    """``services add`` refuses a base URL or a token endpoint at a local address, in any form, or in clear."""
    members = directory(strict)
    for url in _local_urls("/fhir"):
        with pytest.raises(errors.InvalidInput):
            await members.add(service_id=make_service_id(), kind="gateway", name="Local", base_url=url)
        with pytest.raises(errors.InvalidInput):
            await members.add(
                service_id=make_service_id(), kind="gateway", name="Local", base_url="https://8.8.8.8/fhir",
                client_id="c", token_endpoint=url,
            )  # fmt: skip


async def test_client_jwks_urls_are_checked_when_registered(strict: RunningServer) -> None:
    """``clients add --jwks-url`` and ``clients rotate`` refuse a JWKS URL at a local address or in clear."""
    for url in _local_urls("/.well-known/jwks.json"):
        with pytest.raises(errors.InvalidInput):
            await strict.add_client(make_service_id(), "system/Basic.rs", jwks_url=url)


async def test_webhook_endpoints_in_transition_forms_are_refused(
    fhir: httpx.AsyncClient, server: RunningServer
) -> None:
    """A subscription whose endpoint is a local address in any IPv6 transition form is 422."""
    topic = f"{server.base_url}/fhir/SubscriptionTopic/patient-registration"
    for endpoint in _local_urls("/notify"):
        body = subscription_body(topic, endpoint, filters=[f"patient={make_ihi()}"])
        response = await fhir.post("/fhir/Subscription", json=body)
        assert response.status_code == 422, endpoint


# --- When a connection is made ------------------------------------------------------------------


class Recorder:
    """A real HTTP server's app that notes every request's method and path and answers 404."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] != "http":
            return
        self.requests.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


async def test_a_member_gateway_that_now_resolves_to_loopback_is_not_called(
    strict: RunningServer, tmp_path: Path
) -> None:
    """A gateway stored with a name that resolves to loopback at search time is reported, never connected to."""
    async with reference_gateway(ReferenceGateway(token="t")) as gateway:  # noqa: S106 - a test gateway's token
        sid = make_service_id()
        token_file = tmp_path / "t"
        token_file.write_text("t", encoding="utf-8")
        base = gateway.base_url.replace("127.0.0.1", "localhost")
        await strict.add_service(sid, base_url=base, bearer_token_file=str(token_file))
        bundle = await _search(strict, sid)
        assert gateway.searches == 0
    text = _diagnostics(bundle)
    assert "not called" in text
    assert "127.0.0.1" not in text


async def test_a_gateways_token_endpoint_elsewhere_gets_no_assertion(strict: RunningServer) -> None:
    """A gateway whose SMART configuration names a token endpoint on another origin never gets this registry's
    signed client assertion sent there, and that URL does not reach the consumer; an operator-configured token
    endpoint on another origin is used."""
    collector = Recorder()
    async with asgi_server(collector) as elsewhere:
        loose = msgspec.structs.replace(strict.settings, outbound=OutboundSettings(allowed_networks=LOOPBACK_NETWORKS))
        async with running_server(loose, strict.database_url, strict.service_id) as server:
            gateway = ReferenceGateway(client_id="c", announced_token_endpoint=f"{elsewhere}/collect")
            async with reference_gateway(gateway) as running:
                announced = make_service_id()
                await server.add_service(announced, base_url=running.base_url, client_id="c")
                text = _diagnostics(await _search(server, announced))
                assert collector.requests == []
                assert "own origin" in text
                assert "/collect" not in text
                assert elsewhere not in text
                configured = make_service_id()
                other_origin = running.base_url.replace("127.0.0.1", "localhost").removesuffix("/fhir") + "/auth/token"
                await server.add_service(
                    configured, base_url=running.base_url, client_id="c", token_endpoint=other_origin
                )
                await _search(server, configured)
                assert running.token_requests == 1


async def test_a_peer_registry_at_a_local_address_is_not_called(strict: RunningServer, tmp_path: Path) -> None:
    """A referral to a peer whose address is local is unresolved (``unreachable``), and the peer sees nothing."""
    peer = Recorder()
    async with asgi_server(peer) as base:
        sid = make_service_id()
        token_file = tmp_path / "t"
        token_file.write_text("t", encoding="utf-8")
        await strict.add_service(sid, kind="registry", base_url=base, bearer_token_file=str(token_file))
        ihi = make_ihi()
        async with httpx.AsyncClient(base_url=strict.base_url, headers=await strict.headers()) as http:
            await http.put(f"/registry/records/{ihi}/{sid}", json={"type": "registry"})
            answer = (await http.get(f"/registry/records/{ihi}", params={"follow": "true"})).json()
    [entry] = answer["unresolved"]
    assert entry["reason"] == "unreachable"
    assert "not called" in entry["detail"]
    assert peer.requests == []


async def test_a_client_jwks_url_at_a_local_address_is_not_fetched(strict: RunningServer) -> None:
    """A client whose stored JWKS URL is local gets ``invalid_client``; the JWKS server is never asked."""
    keys = Recorder()
    async with asgi_server(keys) as url:
        client_id = make_service_id()
        conn = await asyncpg.connect(strict.database_url)
        try:
            await conn.execute(
                "INSERT INTO clients (client_id, name, service_id, scopes, auth_method, jwks_url)"
                " VALUES ($1, 'Local keys', $2, $3, 'private_key_jwt', $4)",
                client_id, make_service_id(), ["system/Basic.rs"], f"{url}/jwks.json",
            )  # fmt: skip
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=strict.base_url) as http:
            signed = assertion(make_rsa_key(), client_id, f"{strict.base_url}/auth/token")
            response = await request_token(http, signed, "system/Basic.rs")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"
    assert keys.requests == []


async def _search(server: RunningServer, sid: str) -> dict[str, Any]:
    ihi = make_ihi()
    async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers(), timeout=30) as http:
        await http.put(f"/registry/records/{ihi}/{sid}", json={})
        response = await http.get("/fhir/ImagingStudy", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _diagnostics(bundle: dict[str, Any]) -> str:
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "OperationOutcome"]
    return " ".join(issue.get("diagnostics", "") for outcome in outcomes for issue in outcome["issue"])


# --- TLS 1.2 at least, on every client ----------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for a TLS server on loopback."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


async def _tls_server(certificate: tuple[Path, Path], *, old: bool) -> asyncio.Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    if old:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


async def test_outbound_tls_below_1_2_is_refused(certificate: tuple[Path, Path]) -> None:
    """The outbound client fails the handshake with a TLS 1.1 server before any certificate is looked at,
    where a TLS 1.2 server gets as far as the certificate check (and an old client would connect)."""
    client = new_http_client(5.0, AddressPolicy(dev=True))
    failures = {}
    try:
        for old in (True, False):
            server = await _tls_server(certificate, old=old)
            port = server.sockets[0].getsockname()[1]
            try:
                with pytest.raises(httpx.ConnectError) as failed:
                    await client.get(f"https://localhost:{port}/")
                failures[old] = str(failed.value)
            finally:
                server.close()
    finally:
        await client.aclose()
    assert "CERTIFICATE_VERIFY_FAILED" not in failures[True]
    assert "CERTIFICATE_VERIFY_FAILED" in failures[False]
    assert tls_context().minimum_version == ssl.TLSVersion.TLSv1_2


def test_every_outbound_client_is_made_by_the_egress_module() -> None:
    """No module but ``registry/outbound/egress.py`` builds an HTTP client, an httpcore connection or a TLS context
    (``registry/demo.py``, the demonstration gateways' own client of the local registry, aside)."""
    makers = {"AsyncClient", "Client", "AsyncHTTPConnection", "AsyncConnectionPool", "create_default_context",
              "create_ssl_context", "SSLContext", "AsyncHTTPTransport"}  # fmt: skip
    found = []
    for package in ("registry", "broker", "federation", "schemas"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative in ("registry/outbound/egress.py", "registry/demo.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in makers:
                    found.append(f"{relative}:{node.lineno}")
    assert not found, f"outbound clients made outside registry.outbound.egress: {found}"


def test_a_refusal_is_found_behind_httpx_errors() -> None:
    """``refusal`` finds the policy's error behind the httpx error that wraps it (the notifier classifies by it)."""
    cause = AddressRefused("no")
    wrapped = httpx.ConnectError("wrapped")
    wrapped.__cause__ = cause
    assert refusal(wrapped) is cause
    assert refusal(httpx.ConnectError("plain")) is None
