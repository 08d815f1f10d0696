"""Demonstration gateways for ``ief-registry demo``: three imaging gateways on one local port.

``ief-registry demo`` runs the registry on an embedded cluster of its own and this module in a
second process (``python -m registry.demo``). The gateways behave as member gateways do: each
registers the patients it holds imaging for through the registry's native API, then answers the
broker's ``ImagingStudy`` searches (two in the IEF style, one in the style of today's Harmony
gateways), taking only the bearer token the registry was given for them. Two of them hold the
same CT study, so a broker search shows the merge. The data is invented; nothing here is used by
the server itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec

from schemas.fhir.outcome import OutcomeIssue, operation_outcome

__all__ = ("GATEWAYS", "PATIENTS", "DemoGateway", "Gateway", "Study", "main")

IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PAYLOAD_TYPES = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
TOKEN_ENV = "IEF_DEMO_GATEWAY_TOKEN"  # noqa: S105 - the name of a variable, not a secret
ADMIN_TOKEN_ENV = "IEF_DEMO_ADMIN_TOKEN"  # noqa: S105

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Study:
    """One imaging study a demonstration gateway holds."""

    ihi: str
    uid: str
    started: str
    modality: str
    description: str


@dataclass(frozen=True, slots=True)
class Gateway:
    """A demonstration gateway: its service ID, name, path on the demo port, search style and studies."""

    service_id: str
    name: str
    slug: str
    style: str
    studies: tuple[Study, ...]

    def base_url(self, origin: str) -> str:
        """Its FHIR base URL when the gateways listen at ``origin``."""
        return f"{origin}/{self.slug}/fhir"


PATIENTS = ("8003608166690503", "8003609900000009", "8003609900000017")
_SHARED_CT = Study(PATIENTS[0], "1.2.36.1.2001.1005.78.3.1", "2025-06-03T09:30:00+10:00", "CT", "CT chest")
GATEWAYS = (
    Gateway(
        "0f8fad5b-d9cb-469f-a165-70867728950e", "Example Imaging (demo)", "example-imaging", "ief",
        (
            _SHARED_CT,
            Study(PATIENTS[0], "1.2.36.1.2001.1005.78.3.2", "2026-02-11T14:05:00+10:00", "MR", "MR brain"),
            Study(PATIENTS[1], "1.2.36.1.2001.1005.78.3.3", "2026-08-20T08:15:00+10:00", "DX", "XR left wrist"),
        ),
    ),
    Gateway(
        "7c9e6679-7425-40de-944b-e07fc1f90ae7", "City Hospital PACS (demo)", "city-hospital", "ief",
        (
            _SHARED_CT,
            Study(PATIENTS[0], "1.2.36.1.2001.1005.78.4.1", "2026-09-30T17:40:00+10:00", "US", "US abdomen"),
        ),
    ),
    Gateway(
        "16fd2706-8baf-433b-82eb-8c7fada847da", "Harbour Radiology (demo, Harmony style)", "harbour-radiology",
        "harmony",
        (
            Study(PATIENTS[0], "1.2.36.1.2001.1005.78.5.1", "2024-11-12T10:00:00+10:00", "MG", "Mammogram"),
            Study(PATIENTS[2], "1.2.36.1.2001.1005.78.5.2", "2025-01-08T11:20:00+10:00", "CT", "CT head"),
        ),
    ),
)  # fmt: skip


def _ief_study(study: Study, number: int) -> dict[str, Any]:
    coding = {"system": DCM, "code": study.modality}
    return {
        "resourceType": "ImagingStudy",
        "id": f"is-{number}",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.uid}"}],
        "status": "available",
        "subject": {"identifier": {"system": IHI_SYSTEM, "value": study.ihi}},
        "started": study.started,
        "modality": [coding],
        "description": study.description,
        "contained": [
            {
                "resourceType": "Endpoint",
                "id": "wado",
                "status": "active",
                "connectionType": {
                    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                    "code": "dicom-wado-rs",
                },
                "payloadType": [{"coding": [{"system": PAYLOAD_TYPES, "code": "DICOM"}]}],
                "address": f"dicomweb/studies/{study.uid}",
            }
        ],
        "endpoint": [{"reference": "#wado"}],
        "numberOfSeries": 1,
        "series": [{"uid": f"{study.uid}.1", "number": 1, "modality": coding}],
    }


def _harmony_study(study: Study) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": study.uid,
        "identifier": [{"system": "urn:dicom:uid", "value": study.uid}],
        "status": "available",
        "subject": {"reference": f"Patient/{study.ihi}", "display": study.ihi},
        "started": study.started,
        "modality": [{"system": DCM, "code": study.modality}],
        "description": study.description,
        "endpoint": [
            {
                "resourceType": "Endpoint",
                "status": "active",
                "connectionType": {
                    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                    "code": "hl7-fhir-rest",
                },
                "payloadType": [{"text": "ImagingStudy"}],
                "address": f"/api/jmix?studyInstanceUid={study.uid}",
            }
        ],
    }


class DemoGateway:
    """The ASGI application serving every demonstration gateway under its own path."""

    def __init__(self, gateways: tuple[Gateway, ...], token: str) -> None:
        self._gateways = {gateway.slug: gateway for gateway in gateways}
        self._authorization = f"Bearer {token}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``GET /{slug}/fhir/ImagingStudy?…`` searches; 401 without the token, 404 elsewhere."""
        if scope["type"] != "http":
            return
        slug, _, rest = str(scope["path"]).lstrip("/").partition("/")
        gateway = self._gateways.get(slug)
        if gateway is None or rest != "fhir/ImagingStudy" or scope["method"] != "GET":
            await _send(send, 404, _outcome("not-found", "this demonstration gateway answers ImagingStudy searches"))
            return
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").decode("latin-1") != self._authorization:
            await _send(send, 401, _outcome("login", "a valid bearer token is needed"))
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        await _send(send, 200, self.search(gateway, query, f"http://{headers.get(b'host', b'').decode('latin-1')}"))

    def search(self, gateway: Gateway, query: dict[str, str], origin: str) -> dict[str, Any]:
        """The searchset Bundle ``gateway`` answers ``query`` with."""
        if gateway.style == "harmony":
            ihi = query.get("patient")
        else:
            system, _, ihi = query.get("patient.identifier", "").rpartition("|")
            ihi = ihi if system == IHI_SYSTEM else None
        modalities = {code.rpartition("|")[2] for code in query.get("modality", "").split(",") if code}
        base = gateway.base_url(origin)
        entries = []
        for number, study in enumerate(gateway.studies, start=1):
            if study.ihi != ihi or (modalities and study.modality not in modalities):
                continue
            resource = _harmony_study(study) if gateway.style == "harmony" else _ief_study(study, number)
            entries.append({"fullUrl": f"{base}/ImagingStudy/{resource['id']}", "resource": resource})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
        if entries:
            bundle["entry"] = entries
        return bundle


async def register(registry: str, admin_token: str, gateways: tuple[Gateway, ...], *, wait: float = 60.0) -> int:
    """Register every patient each gateway holds imaging for, as a gateway does; returns how many records."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=registry, headers=headers, timeout=10) as http:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the registry at {registry} did not become ready")
            await asyncio.sleep(0.2)
        count = 0
        for gateway in gateways:
            for ihi in sorted({study.ihi for study in gateway.studies}):
                answer = await http.put(f"/registry/records/{ihi}/{gateway.service_id}", json={"status": "active"})
                answer.raise_for_status()
                count += 1
        return count


async def _run(port: int, registry: str, token: str, admin_token: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        DemoGateway(GATEWAYS, token), host="127.0.0.1", port=port, log_config=None, access_log=False,
        lifespan="off", server_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        count = await register(registry, admin_token, GATEWAYS)
        sys.stderr.write(f"demo gateways: {count} records registered with {registry}\n")
    except (httpx.HTTPError, RuntimeError) as exc:
        sys.stderr.write(f"demo gateways: registering failed: {exc}\n")
    await serving


def main(argv: list[str] | None = None) -> None:
    """``python -m registry.demo --port P --registry URL``; tokens come from the environment."""
    parser = argparse.ArgumentParser(prog="python -m registry.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="Port the gateways listen on (127.0.0.1).")
    parser.add_argument("--registry", required=True, help="The registry's root URL, for registering records.")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.port, args.registry, os.environ[TOKEN_ENV], os.environ[ADMIN_TOKEN_ENV]))


def _outcome(code: str, text: str) -> dict[str, Any]:
    return operation_outcome([OutcomeIssue(text, code)])


async def _send(send: Send, status: int, value: object) -> None:
    body = msgspec.json.encode(value)
    headers = [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    main()
