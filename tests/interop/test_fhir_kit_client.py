"""fhir-kit-client (Node), unmodified: smartAuthMetadata(), capabilityStatement(), create, search, an operation by
POST (its default), Subscription create. Skipped, saying why, where Node or the npm packages are not installed
(``.ci/run`` installs both)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.factories import IHI_SYSTEM, make_ihi
from tests.fhir import parse_resource, record_body
from tests.interop.conftest import Live
from tests.subscriptions.helpers import subscription_body
from tests.subscriptions.subscriber import Subscriber

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "fhir_kit_client.mjs"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (.ci/run installs it)"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules/fhir-kit-client").exists(),
        reason="fhir-kit-client is not installed: npm ci --prefix tests/interop/node (.ci/run runs it)",
    ),
]


async def _run(live: Live, **env: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=NODE_DIR, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode(errors="replace")[-4000:]
    return msgspec.json.decode(out.splitlines()[-1])  # type: ignore[no-any-return]


async def test_fhir_kit_client(live: Live, subscriber: Subscriber) -> None:
    """Every call answers what a vendor's client expects: SMART metadata names the token endpoint (from the
    discovery document under the FHIR base or the CapabilityStatement's oauth-uris), the resources are valid."""
    ihi = make_ihi()
    topic = f"{live.fhir_base}/SubscriptionTopic/patient-registration"
    answers = await _run(
        live, FHIR_BASE=live.fhir_base, TOKEN=live.token, IHI=ihi, IHI_SYSTEM=IHI_SYSTEM, GATEWAY=live.gateway,
        RECORD=msgspec.json.encode(record_body(ihi, live.gateway)).decode(),
        SUBSCRIPTION=msgspec.json.encode(
            subscription_body(topic, subscriber.hook().url, filters=[f"patient={ihi}"])
        ).decode(),
    )  # fmt: skip
    assert answers["smart"]["tokenUrl"] == f"{live.server.base_url}/auth/token"
    for name in ("capabilityStatement", "created", "search", "locate", "subscription", "status"):
        parse_resource(answers[name])
    assert answers["capabilityStatement"]["fhirVersion"] == "4.0.1"
    assert [e["resource"]["id"] for e in answers["search"]["entry"]] == [answers["created"]["id"]]
    assert [e["resource"]["id"] for e in answers["locate"]["entry"]] == [live.gateway]
    assert answers["subscription"]["status"] == "requested"
    assert answers["status"]["type"] == "searchset"
