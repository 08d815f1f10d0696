"""``ief-registry demo``: the registry and its demonstration gateways, as a newcomer runs them."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from registry.demo import GATEWAYS, IHI_SYSTEM, PATIENTS
from tests.process.runner import Cli, OsUser, Workdir, cluster_user_for, embedded, interpreter_for, postmasters
from tests.server import free_port

pytestmark = pytest.mark.slow


def _wait_for(predicate: object, process: subprocess.Popen[str], log: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"demo exited with {process.returncode}"
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout} s: {log}")


def test_demo_registers_gateways_and_the_printed_search_merges_their_studies(workdir: Workdir) -> None:
    """The demo's gateways register their patients; the printed broker search merges all three; SIGTERM stops all."""
    user = OsUser.current()
    cluster_user = cluster_user_for(user)
    data_dir = workdir.data_dir("demo", owner=user, cluster_user=cluster_user)
    cli = Cli(data_dir, user, interpreter_for(user))
    port, gateway_port = free_port(), free_port()
    output = data_dir.parent / "demo.out"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [cli.python, "-m", "registry", "demo", "--port", str(port), "--gateway-port", str(gateway_port),
             "--data-dir", str(data_dir)],
            env=cli.env(), cwd=data_dir, stdout=sink, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    try:
        _wait_for(lambda: "export TOKEN=" in output.read_text(), process, "no token printed")
        printed = output.read_text()
        token = re.search(r"^export TOKEN=(\S+)$", printed, re.MULTILINE)
        assert token is not None, printed
        ihi = PATIENTS[0]
        search = f"/fhir/ImagingStudy?patient.identifier={IHI_SYSTEM}|{ihi}"
        assert search in printed
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token[1]}"})
        holders = {gateway.service_id for gateway in GATEWAYS if any(s.ihi == ihi for s in gateway.studies)}

        def registered() -> bool:
            answer = http.get(f"/registry/records/{ihi}")
            return answer.status_code == 200 and {r["serviceId"] for r in answer.json()["records"]} == holders

        _wait_for(registered, process, "the gateways did not register their records")
        bundle = http.get(search).json()
        identifiers = [i for e in bundle["entry"] for i in e["resource"]["identifier"]]
        uids = [i["value"] for i in identifiers if i["system"] == "urn:dicom:uid"]
        studies = {uid.removeprefix("urn:oid:") for uid in uids}
        expected = {s.uid for gateway in GATEWAYS for s in gateway.studies if s.ihi == ihi}
        assert studies == expected
        assert len(bundle["entry"]) == len(expected), "the CT held by two gateways is listed once"
        assert all(e["search"]["mode"] == "match" for e in bundle["entry"]), "no gateway failed"
        http.close()
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("registry.demo" in " ".join(child.cmdline()) for child in children)
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(60)
    assert status == 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    assert postmasters(embedded(data_dir, cluster_user).cluster) == [], "the embedded cluster was stopped"
