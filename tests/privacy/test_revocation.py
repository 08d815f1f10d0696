"""Revocation is real time: a consent change made through one server process is obeyed by another on its
very next request (two real ``serve`` processes on one database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from tests.cli import run_cli
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.scale.fleet import fleet
from tests.server import add_service

if TYPE_CHECKING:
    from pathlib import Path

    from tests.pg import TestCluster

SCOPES = "system/Basic.rs system/Endpoint.rs"


@dataclass(frozen=True, slots=True)
class Operator:
    """Whose operator runs the command line: the fleet's database and service ID."""

    database_url: str
    service_id: str


def opt_out(ihi: str) -> dict[str, object]:
    """A Consent denying everything (an opt-out), as a consent capture system posts it."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": IHI_SYSTEM, "value": ihi}},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    }


async def test_a_consent_change_through_one_process_is_obeyed_by_another_on_the_next_request(
    template: TestCluster, tmp_path: Path
) -> None:
    """An opt-out posted to process A withholds the patient's records at process B on its next request; its
    withdrawal through B restores them at A on the next request (no cache between them)."""
    database_url = await template.new_database()
    operator = Operator(database_url, make_service_id())
    gateway = make_service_id()
    await add_service(database_url, gateway)
    consumer_service = make_service_id()
    await add_service(database_url, consumer_service)
    settings = {"IEF_SERVICE_ID": operator.service_id, "IEF_DEV": "true", "IEF_AUTH_CLIENT_CACHE_SECONDS": "0"}
    async with fleet(database_url, tmp_path, servers=2, workers=0, settings=settings) as running:
        first, second = running.servers
        admin = first.authorization()
        added = await run_cli(
            operator, "clients", "add", "EHR", "--service-id", consumer_service, "--scopes", SCOPES, "--secret"
        )
        assert added.code == 0, added.err
        secret = added.out.split("store it now): ", 1)[1].split()[0]
        async with (
            httpx.AsyncClient(base_url=first.base_url, timeout=30) as a,
            httpx.AsyncClient(base_url=second.base_url, timeout=30) as b,
        ):
            issued = await a.post(
                "/auth/token",
                data={"grant_type": "client_credentials", "scope": SCOPES, "client_id": added.last_line,
                      "client_secret": secret},
            )  # fmt: skip
            consumer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
            ihi = make_ihi()
            assert (await a.put(f"/registry/records/{ihi}/{gateway}", json={}, headers=admin)).status_code == 201
            assert len((await b.get(f"/registry/records/{ihi}", headers=consumer)).json()["records"]) == 1

            created = await a.post("/fhir/Consent", json=opt_out(ihi), headers=admin)
            assert created.status_code == 201, created.text
            withheld = (await b.get(f"/registry/records/{ihi}", headers=consumer)).json()
            assert (withheld["records"], withheld["withheld"]) == ([], True)

            consent = created.json()
            withdrawn = await b.put(
                f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"}, headers=admin
            )
            assert withdrawn.status_code == 200, withdrawn.text
            assert len((await a.get(f"/registry/records/{ihi}", headers=consumer)).json()["records"]) == 1
