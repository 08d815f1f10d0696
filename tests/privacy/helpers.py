"""Privacy test helpers: consumers with clearances and permissions, reference gateways holding a patient's
imaging, registrations with security labels, the operator's command line, subscriptions on a patient."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.cli import CliResult, run_cli
from tests.factories import IHI_SYSTEM, make_service_id
from tests.gateway import ReferenceGateway, reference_gateway
from tests.subscriptions.helpers import subscription_body

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from tests.clients import ClientFactory
    from tests.server import RunningServer
    from tests.subscriptions.subscriber import Hook, Subscriber

__all__ = ("CONSUMER_SCOPES", "Consumer", "Privacy")

CONSUMER_SCOPES = "system/Basic.rs system/Endpoint.rs system/ImagingStudy.rs system/DocumentReference.rs"
"""What a consumer (an EHR, a viewer) holds: look-ups, $locate and the broker's searches."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """A client bound to a service of its own, with an audit-checked HTTP client carrying its token."""

    http: httpx.AsyncClient
    client_id: str
    service_id: str

    async def lookup(self, ihi: str, **params: Any) -> httpx.Response:
        """``GET /registry/records/{ihi}`` (``follow`` and headers as given)."""
        headers = params.pop("headers", None)
        return await self.http.get(f"/registry/records/{ihi}", params=params, headers=headers)

    async def locate(self, ihi: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """``GET /fhir/Patient/$locate?identifier=<IHI system>|<ihi>``."""
        return await self.http.get(
            "/fhir/Patient/$locate", params={"identifier": f"{IHI_SYSTEM}|{ihi}"}, headers=headers
        )

    async def basic(self, ihi: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """``GET /fhir/Basic?patient.identifier=<IHI system>|<ihi>``."""
        return await self.http.get("/fhir/Basic", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}"}, headers=headers)

    async def studies(self, ihi: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """The broker's ``GET /fhir/ImagingStudy?patient.identifier=<IHI system>|<ihi>``."""
        params = {"patient.identifier": f"{IHI_SYSTEM}|{ihi}"}
        return await self.http.get("/fhir/ImagingStudy", params=params, headers=headers)


@dataclass
class Privacy:
    """The privacy server, its operator's client, and what a test makes (consumers, gateways)."""

    server: RunningServer
    admin: httpx.AsyncClient
    clients: ClientFactory
    subscriber: Subscriber
    folder: Path
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def close(self) -> None:
        """Close the consumers' clients and stop the gateways."""
        await self._stack.aclose()

    async def consumer(
        self,
        *,
        scopes: str = CONSUMER_SCOPES,
        clearances: tuple[str, ...] = (),
        break_glass: bool = False,
        purposes: tuple[str, ...] = (),
        service_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Consumer:
        """A new client (as ``clients add … --clearance … --break-glass --purpose …`` registers it), bound to
        ``service_id`` or a new service of its own, with a token from the server's issuer."""
        bound = service_id or make_service_id()
        if service_id is None:
            await self.server.add_service(bound, name="Consumer service")
        row, _ = await self.server.auth.clients.add(
            name="Consumer", service_id=bound, scopes=scopes.split(), secret=True, clearances=clearances,
            break_glass=break_glass, purposes=purposes,
        )  # fmt: skip
        token = await self.server.token(scopes, client_id=row.client_id, service_id=bound)
        http = self.clients(headers={"Authorization": f"Bearer {token}", **(headers or {})})
        await self._stack.enter_async_context(http)
        return Consumer(http, row.client_id, bound)

    async def gateway(self, ihi: str | None = None, *, labels: list[str] | None = None) -> tuple[ReferenceGateway, str]:
        """A running reference gateway in the directory (with a bearer token file), holding a study for ``ihi``
        when given, registered with ``labels``; returns it and its service ID."""
        token = secrets.token_urlsafe(16)
        running = await self._stack.enter_async_context(reference_gateway(token=token))
        service_id = make_service_id()
        path = self.folder / f"{service_id}.token"
        path.write_text(token + "\n", encoding="utf-8")
        await self.server.add_service(
            service_id, name=f"Gateway {service_id[:8]}", base_url=running.base_url, bearer_token_file=str(path)
        )
        if ihi is not None:
            running.study(ihi, f"1.2.3.{secrets.randbelow(10**9)}")
            await self.register(ihi, service_id, labels=labels)
        return running, service_id

    async def register(self, ihi: str, service_id: str, *, labels: list[str] | None = None) -> httpx.Response:
        """Register (as the operator) that ``service_id`` holds imaging for ``ihi``, with ``labels`` if given."""
        body: dict[str, Any] = {"status": "active"}
        if labels is not None:
            body["securityLabels"] = labels
        response = await self.admin.put(f"/registry/records/{ihi}/{service_id}", json=body)
        assert response.status_code in (200, 201), response.text
        return response

    async def cli(self, *args: str) -> CliResult:
        """``ief-registry ARGS`` as the server's operator; it must succeed."""
        result = await run_cli(self.server, *args)
        assert result.code == 0, result.err
        return result

    async def subscribe(self, hook: Hook, ihi: str, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """An active patient-registration subscription on ``ihi`` delivering to ``hook``."""
        topic = f"{self.server.base_url}/fhir/SubscriptionTopic/patient-registration"
        body = subscription_body(topic, hook.url, filters=[f"patient={IHI_SYSTEM}|{ihi}"])
        client = http or self.admin
        response = await client.post("/fhir/Subscription", json=body)
        assert response.status_code == 201, response.text
        created = dict(response.json())
        await hook.wait(lambda h: bool(h.of_kind("handshake")))
        return created
