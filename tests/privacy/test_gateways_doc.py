"""docs/gateways.md's verification example, run against a real IEF-Requester a reference gateway received."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from joserfc.errors import JoseError

from registry.auth.wiring import issuer_name
from tests.factories import make_hpii, make_ihi

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy

GATEWAYS = Path(__file__).resolve().parents[2] / "docs" / "gateways.md"


def verifier() -> Any:
    """The ``verify_requester`` function of the document's Python example."""
    (code,) = re.findall(r"```python\n(.*?)```", GATEWAYS.read_text(encoding="utf-8"), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(GATEWAYS), "exec"), namespace)  # noqa: S102 - our own documentation's example
    return namespace["verify_requester"]


async def test_the_documented_verification_accepts_a_real_assertion_and_refuses_others(privacy: Privacy) -> None:
    """The example verifies what the broker sent, and refuses it for another gateway or another registry."""
    ihi, hpii = make_ihi(), make_hpii()
    gateway, _ = await privacy.gateway(ihi)
    consumer = await privacy.consumer(headers={"IEF-Purpose-Of-Use": "TREAT", "IEF-On-Behalf-Of": hpii})
    assert (await consumer.studies(ihi)).status_code == 200
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(f"{privacy.server.base_url}/.well-known/jwks.json")).json()
    registry = issuer_name(privacy.server.settings, privacy.server.service_id)
    verify = verifier()
    (seen,) = gateway.seen
    claims = verify(seen.requester, jwks, gateway.base_url, registry)
    assert (claims["sub"], claims["act"], claims["ihi"]) == (consumer.client_id, {"sub": hpii}, ihi)
    for base, issuer in (("https://other.gateway.test/fhir", registry), (gateway.base_url, "https://elsewhere")):
        with pytest.raises(JoseError):
            verify(seen.requester, jwks, base, issuer)
