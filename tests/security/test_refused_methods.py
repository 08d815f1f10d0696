"""Requests refused before any handler runs still leave their audit row.

A method a path does not take (405) matches no route handler, so no handler declares it
patient-linked. When another method of the same path is patient-linked, the refusal names a
patient record all the same (``DELETE /fhir/Basic/{id}``, ``DELETE /registry/records/{ihi}/{sid}``,
``DELETE /fhir/Consent/{id}``)
and is audited as the interaction it would have been, with the patient its path names.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.factories import make_ihi
from tests.fhir import fixture
from tests.server import RunningServer


async def _row(server: RunningServer, request_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(server.database_url)
    try:
        return await conn.fetchrow(
            "SELECT interaction, action, status, outcome, method, path, patients, client_id FROM audit_events"
            " WHERE request_id = $1",
            request_id,
        )
    finally:
        await conn.close()


async def test_delete_of_a_registry_record_resource_is_audited(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """``DELETE /fhir/Basic/{id}`` is 405 and leaves a delete row naming the caller, the path and the outcome."""
    ihi = make_ihi()
    await fhir.put(f"/registry/records/{ihi}/{gateway}", json={})
    record_id = (
        await fhir.get(f"/fhir/Basic?subject:identifier=http://ns.electronichealth.net.au/id/hi/ihi/1.0|{ihi}")
    ).json()["entry"][0]["resource"]["id"]
    response = await fhir.delete(f"/fhir/Basic/{record_id}", headers={"x-request-id": "refused-delete-1"})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    row = await _row(server, "refused-delete-1")
    assert row is not None
    assert (row["interaction"], row["action"], row["status"], row["outcome"]) == ("delete", "D", 405, 4)
    assert (row["method"], row["path"], row["client_id"]) == ("DELETE", f"/fhir/Basic/{record_id}", "operator")


async def test_delete_of_a_consent_is_refused_and_audited(client: httpx.AsyncClient, server: RunningServer) -> None:
    """``DELETE /fhir/Consent/{id}`` is 405 (a Consent is withdrawn, never deleted) and leaves a delete row."""
    created = await client.post("/fhir/Consent", json=fixture("Consent-opt-out.json", ihi=make_ihi()))
    assert created.status_code == 201
    consent_id = created.json()["id"]
    response = await client.delete(f"/fhir/Consent/{consent_id}", headers={"x-request-id": f"refused-{consent_id}"})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    row = await _row(server, f"refused-{consent_id}")
    assert row is not None
    assert (row["interaction"], row["action"], row["status"], row["path"]) == (
        "delete", "D", 405, f"/fhir/Consent/{consent_id}",
    )  # fmt: skip
    assert (await client.get(f"/fhir/Consent/{consent_id}")).json()["status"] == "active"


@pytest.mark.parametrize(
    ("method", "interaction"),
    [("DELETE", "delete"), ("PATCH", "patch"), ("POST", "create")],
)
async def test_refused_methods_on_a_patients_path_name_the_patient(
    client: httpx.AsyncClient, server: RunningServer, gateway: str, method: str, interaction: str
) -> None:
    """A refused method on ``/registry/records/{ihi}/{sid}`` is audited with the IHI its path names."""
    ihi = make_ihi()
    rid = f"refused-{method.lower()}-{ihi}"
    response = await client.request(method, f"/registry/records/{ihi}/{gateway}", headers={"x-request-id": rid})
    assert response.status_code == 405
    row = await _row(server, rid)
    assert row is not None
    assert (row["interaction"], row["status"], list(row["patients"])) == (interaction, 405, [ihi])


async def test_refused_methods_elsewhere_are_not_audited(anonymous: httpx.AsyncClient, server: RunningServer) -> None:
    """A 405 on a path with no patient-linked method (``DELETE /health/live``) leaves no row."""
    response = await anonymous.delete("/health/live", headers={"x-request-id": "refused-health-1"})
    assert response.status_code == 405
    assert await _row(server, "refused-health-1") is None
