"""Authlib, unmodified apart from configuration: SMART Backend Services (client credentials with private_key_jwt)
discovered from ``/fhir/.well-known/smart-configuration``, its metadata checked by Authlib's RFC 8414 rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc.jwk import RSAKey

from registry.config import AuthSettings
from tests.factories import make_ihi, make_service_id
from tests.fhir import parse_resource
from tests.interop.conftest import Live
from tests.pg import TestCluster
from tests.server import running_server
from tests.settings import test_settings

_CHECKED = (
    "validate_token_endpoint",
    "validate_jwks_uri",
    "validate_grant_types_supported",
    "validate_scopes_supported",
    "validate_token_endpoint_auth_methods_supported",
    "validate_token_endpoint_auth_signing_alg_values_supported",
)
"""Authlib's checks of what a client-credentials client uses (the rest describe browser flows, not served here)."""


async def _discover(fhir_base: str) -> AuthorizationServerMetadata:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{fhir_base}/.well-known/smart-configuration")
    assert response.status_code == 200
    metadata = AuthorizationServerMetadata(response.json())
    for check in _CHECKED:
        getattr(metadata, check)()
    return metadata


async def test_client_credentials_with_private_key_jwt(
    live: Live, client_key: RSAKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery under the FHIR base passes Authlib's checks; Authlib's client gets a token with a private_key_jwt
    assertion (RS384) from the discovered endpoint, and the token reads records."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the live server is plain HTTP on loopback
    metadata = await _discover(live.fhir_base)
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "permission-v2" in metadata["capabilities"]
    service_id = make_service_id()
    await live.server.add_service(service_id)
    client_id, _ = await live.server.add_client(
        service_id, "system/Basic.rs", public_key_pem=client_key.as_pem(private=False).decode()
    )
    token_endpoint = metadata["token_endpoint"]

    def client_credentials() -> tuple[dict[str, Any], Any]:
        """Authlib's requests client (blocking: run beside the live server's event loop)."""
        with OAuth2Session(
            client_id,
            client_key.as_pem(private=True).decode(),
            # SMART Backend Services: an assertion expires within five minutes (Authlib's default is an hour)
            token_endpoint_auth_method=PrivateKeyJWT(
                token_endpoint, alg="RS384", claims={"exp": int(time.time()) + 240}
            ),
            scope="system/Basic.rs",
        ) as oauth:
            token = oauth.fetch_token(token_endpoint, grant_type="client_credentials")
            return token, oauth.get(f"{live.fhir_base}/Basic", params={"patient": make_ihi()}, timeout=30)

    token, search = await asyncio.to_thread(client_credentials)
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "system/Basic.rs"
    assert search.status_code == 200
    parse_resource(search.json())


async def test_an_https_issuer_passes_authlibs_issuer_rule(template: TestCluster) -> None:
    """With an https issuer the discovery document names it and Authlib's issuer rule holds; with a urn: issuer
    (no public base URL) the document leaves it out rather than name one Authlib refuses."""
    settings = test_settings(auth=AuthSettings(issuer="https://registry.example.org"))
    database = await template.new_database()
    async with running_server(settings, database, make_service_id()) as server, httpx.AsyncClient() as http:
        document = (await http.get(f"{server.base_url}/fhir/.well-known/smart-configuration")).json()
    assert document["issuer"] == "https://registry.example.org"
    AuthorizationServerMetadata(document).validate_issuer()
