"""Fixtures of the integration tests: a FHIR client that parses every FHIR response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fhir import check_fhir_response
from tests.server import RunningServer


@pytest.fixture
async def fhir(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the session's server whose every FHIR JSON response must parse as R4B (or the test fails)."""
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=30, event_hooks={"response": [check_fhir_response]}
    ) as http:
        yield http
