"""``serve --workers N --config FILE``: every worker process runs with the whole configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest
from joserfc import jwt

from tests.auth import bearer
from tests.factories import make_ihi, make_rsa_key, make_service_id
from tests.pg import TestCluster
from tests.server import free_port

pytestmark = pytest.mark.slow

AUTHORITY = "https://idp.workers.test"
AUDIENCE = "https://registry.workers.test"


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry", *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=base_url, timeout=5) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if http.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"serve was not ready:\n{log.read_text(errors='replace')}")


@pytest.fixture
async def database_url(template: TestCluster) -> str:
    """A fresh migrated database of the session's cluster."""
    return await template.new_database()


def test_two_workers_run_with_the_configuration_file(database_url: str, tmp_path: Path) -> None:
    """Both workers take the file's settings: its trusted issuer (TOML only), its log level, its data directory."""
    data_dir, cwd = tmp_path / "data", tmp_path / "elsewhere"
    cwd.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("IEF_")}
    env["IEF_DATABASE_URL"] = database_url
    config = tmp_path / "ief.toml"
    settings = f'data_dir = "{data_dir}"\n\n[log]\nlevel = "warning"\nformat = "json"\n'
    config.write_text(settings, encoding="utf-8")
    added = _cli(
        "--config", str(config), "clients", "add", "Mapped", "--service-id", make_service_id(),
        "--scopes", "system/Basic.rs", "--external", env=env, cwd=cwd,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    local_client = added.stdout.strip().splitlines()[-1]
    key = make_rsa_key(alg="RS256", kid="workers-idp")
    jwks = tmp_path / "idp.jwks"
    jwks.write_bytes(msgspec.json.encode({"keys": [key.as_dict(private=False)]}))
    trusted = (
        f'\n[[auth.trusted_issuers]]\nissuer = "{AUTHORITY}"\naudience = "{AUDIENCE}"\njwks_file = "{jwks}"\n'
        f'clients = {{ "idp-client" = "{local_client}" }}\n'
    )
    config.write_text(settings + trusted, encoding="utf-8")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry", "--config", str(config), "serve", "--workers", "2", "--port", str(port)],
            env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    now = int(time.time())
    claims = {
        "iss": AUTHORITY, "aud": AUDIENCE, "client_id": "idp-client", "iat": now, "exp": now + 300,
        "jti": uuid.uuid4().hex, "scope": "system/Basic.rs",
    }  # fmt: skip
    token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])
    workers: set[str] = set()
    try:
        _wait_ready(base_url, process, log)
        for _ in range(400):  # each request on a connection of its own, until both workers have answered
            with httpx.Client(base_url=base_url, timeout=30) as http:
                answer = http.get(f"/registry/records/{make_ihi()}", headers=bearer(token))
            assert answer.status_code == 200, answer.text
            workers.add(answer.headers["x-request-id"][:16])  # each process's request IDs share a prefix
            if len(workers) == 2:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert len(workers) == 2, "one worker answered every request"
    assert not (cwd / ".ief-registry").exists()
    assert (data_dir / "service-id").exists()
    assert (data_dir / "log-hash.key").exists()
    logged = log.read_text(encoding="utf-8", errors="replace")
    assert '"level":"info"' not in logged, logged
