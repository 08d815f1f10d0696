"""HTTP clients of the test servers: one factory for every shared server of the suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from tests.fhir import check_fhir_response

if TYPE_CHECKING:
    from tests.audit_ledger import AuditLedger

__all__ = ("SHARED_TLS", "ClientFactory", "client_factory")

SHARED_TLS = httpx.create_ssl_context()
"""One TLS context for the clients of the tests: making one loads the CA bundle (about 30 ms of CPU, a quarter
of the suite's when every client made its own), and the servers under test speak plain HTTP on loopback."""

ClientFactory = Callable[..., httpx.AsyncClient]
"""Makes an ``httpx.AsyncClient`` of a server from ``httpx.AsyncClient`` options."""


def client_factory(base_url: str, headers: dict[str, str], ledger: AuditLedger | None = None) -> ClientFactory:
    """Clients of the server at ``base_url``: ``headers`` unless the options say otherwise (``headers={}``: no
    token), a 30 s timeout, every FHIR JSON answer (errors included) parsed with the R4B models, and, given a
    ``ledger``, every request noted for the audit check (each patient-linked one must have one audit row)."""

    def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout", 30)
        options.setdefault("headers", headers)
        options.setdefault("verify", SHARED_TLS)
        hooks: dict[str, list[Any]] = ledger.hooks() if ledger is not None else {"request": [], "response": []}
        hooks["response"].append(check_fhir_response)
        return httpx.AsyncClient(base_url=base_url, event_hooks=hooks, **options)

    return make
