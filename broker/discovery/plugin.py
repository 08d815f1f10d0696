"""How the broker's discovery joins the server: the ImagingStudy and DocumentReference searches."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from broker.discovery.controller import (
    DOCUMENT_REFERENCE_SEARCH,
    IMAGING_STUDY_SEARCH,
    DocumentReferenceController,
    ImagingStudyController,
)
from broker.discovery.gateways import GatewayClient, new_gateway_http
from broker.discovery.service import DiscoveryService
from registry.feature import FeaturePlugin
from registry.outbound.egress import outbound_policy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar.types import ControllerRouterHandler

    from broker.discovery.locator import Locator
    from registry.auth.assertions import RequesterAssertions
    from registry.auth.outbound import OutboundCredentials
    from registry.feature import Members
    from schemas.fhir.canonical import Canonicals

__all__ = ("DiscoveryPlugin",)


class DiscoveryPlugin(FeaturePlugin):
    """The broker's fan-out to the patient's gateways (DESIGN §6)."""

    capabilities = (IMAGING_STUDY_SEARCH, DOCUMENT_REFERENCE_SEARCH)

    def fhir_routes(self) -> Sequence[ControllerRouterHandler]:
        """The two search routes."""
        return (ImagingStudyController, DocumentReferenceController)

    @contextlib.asynccontextmanager
    async def open(
        self,
        *,
        locator: Locator,
        directory: Members,
        credentials: OutboundCredentials,
        assertions: RequesterAssertions,
        canon: Canonicals,
    ) -> AsyncIterator[DiscoveryService]:
        """The broker of one process: its gateway connections (closed at the end), breakers and single flights."""
        settings = self.settings.broker
        http = new_gateway_http(settings, outbound_policy(self.settings))
        gateways = GatewayClient(
            http, credentials, assertions, max_bytes=settings.max_response_bytes,
            per_gateway=settings.gateway_concurrency,
        )  # fmt: skip
        service = DiscoveryService(
            locator=locator, directory=directory, gateways=gateways, http=http, settings=settings, canon=canon
        )
        try:
            yield service
        finally:
            await service.close()
