"""Purpose of use and the end user: headers, token claims (also asked for at ``/auth/token``), what the client
is registered to state, and the setting that makes a purpose compulsory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import msgspec

from registry.config import PrivacySettings
from tests.factories import make_hpii, make_ihi, make_service_id
from tests.server import running_server
from tests.settings import test_settings

if TYPE_CHECKING:
    from tests.pg import TestCluster
    from tests.privacy.helpers import Privacy


async def test_headers_are_checked_against_the_registration(privacy: Privacy) -> None:
    """A purpose that is not a PurposeOfUse code or a practitioner that is not an HPI-I is 422; a purpose the
    client is not registered for is 403; a registered one is taken."""
    ihi = make_ihi()
    await privacy.gateway(ihi)
    consumer = await privacy.consumer(purposes=("TREAT",))
    for headers in ({"IEF-Purpose-Of-Use": "BROWSING"}, {"IEF-On-Behalf-Of": "8003601234567890"}):
        refused = await consumer.lookup(ihi, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid-privacy-context"
    other = await consumer.lookup(ihi, headers={"IEF-Purpose-Of-Use": "HRESCH"})
    assert other.status_code == 403
    assert other.json()["issue"][0]["details"]["coding"][0]["code"] == "purpose-not-allowed"
    assert (await consumer.lookup(ihi, headers={"IEF-Purpose-Of-Use": "TREAT"})).status_code == 200


async def test_purpose_and_practitioner_can_be_token_claims_asked_for_at_the_token_endpoint(privacy: Privacy) -> None:
    """``purpose_of_use`` and ``requesting_practitioner`` asked for at /auth/token are checked and become claims,
    which the audit row records; a purpose outside the registration is ``invalid_scope``."""
    ihi, hpii = make_ihi(), make_hpii()
    await privacy.gateway(ihi)
    service = make_service_id()
    await privacy.server.add_service(service)
    scopes = "system/Basic.rs"
    row, secret = await privacy.server.auth.clients.add(
        name="EHR", service_id=service, scopes=[scopes], secret=True, purposes=["TREAT"]
    )
    form = {"grant_type": "client_credentials", "scope": scopes, "client_id": row.client_id, "client_secret": secret}
    async with httpx.AsyncClient(base_url=privacy.server.base_url) as http:
        wrong = await http.post("/auth/token", data={**form, "purpose_of_use": "HRESCH"})
        assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_scope")
        not_hpii = await http.post("/auth/token", data={**form, "requesting_practitioner": "123"})
        assert not_hpii.json()["error"] == "invalid_request"
        issued = await http.post(
            "/auth/token", data={**form, "purpose_of_use": "TREAT", "requesting_practitioner": hpii}
        )
        assert issued.status_code == 200, issued.text
    claims = msgspec.json.decode(_payload(issued.json()["access_token"]))
    assert (claims["purpose_of_use"], claims["requesting_practitioner"]) == ("TREAT", hpii)
    async with privacy.clients(headers={"Authorization": f"Bearer {issued.json()['access_token']}"}) as ehr:
        answer = await ehr.get(f"/registry/records/{ihi}")
    async with privacy.server.database.writer() as conn:
        stated = await conn.fetchrow(
            "SELECT purpose_of_use, practitioner FROM audit_events WHERE request_id = $1",
            answer.headers["x-request-id"],
        )
    assert stated is not None
    assert (stated["purpose_of_use"], stated["practitioner"]) == ("TREAT", hpii)


def _payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_a_required_purpose_refuses_reads_without_one(template: TestCluster) -> None:
    """With IEF_PRIVACY_REQUIRE_PURPOSE a patient-linked read without a purpose is 400; writes are not reads."""
    settings = test_settings(privacy=PrivacySettings(require_purpose=True))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        ihi, gateway = make_ihi(), make_service_id()
        await server.add_service(gateway)
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers("admin")) as http:
            assert (await http.put(f"/registry/records/{ihi}/{gateway}", json={})).status_code == 201
            refused = await http.get(f"/registry/records/{ihi}")
            assert refused.status_code == 400
            assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "purpose-required"
            stated = await http.get(f"/registry/records/{ihi}", headers={"IEF-Purpose-Of-Use": "TREAT"})
            assert stated.status_code == 200
