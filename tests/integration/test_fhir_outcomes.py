"""Every error body, native API included, is an OperationOutcome that fhir.resources R4B parses."""

from __future__ import annotations

import httpx

from tests.factories import make_ihi
from tests.server import RunningServer


async def test_native_errors_are_valid_operation_outcomes(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """400, 404, 405, 413, 415 and 422 from the native API parse as R4B OperationOutcomes (the client checks each)."""
    ihi = make_ihi()
    record = f"/registry/records/{ihi}/{gateway}"
    json = {"content-type": "application/json"}
    big = b'{"status": "' + b"x" * (server.settings.http.max_body_bytes + 1) + b'"}'
    responses = {
        400: await fhir.put(record, content=b'{"status": ', headers=json),
        404: await fhir.get("/no/such/route"),
        405: await fhir.delete(f"/registry/records/{ihi}"),
        413: await fhir.put(record, content=big, headers=json),
        415: await fhir.put(record, content=b"{}", headers={"content-type": "text/plain"}),
        422: await fhir.put(f"/registry/records/{ihi[:-1]}/{gateway}", json={"status": "active"}),
    }
    for status, response in responses.items():
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.json()["resourceType"] == "OperationOutcome"
    batch = await fhir.post("/registry/records:batch", json={"not": "an array"})
    assert (batch.status_code, batch.json()["issue"][0]["code"]) == (422, "invalid")
    unknown = await fhir.get(f"/registry/records/{ihi}", params={"colour": "blue"})
    assert (unknown.status_code, unknown.json()["issue"][0]["expression"]) == (400, ["colour"])
