"""The architecture as tests: the import contracts of ``.importlinter`` hold, and each one catches a violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("registry", "broker", "federation", "schemas")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` (imported from there, not from the installed project)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / ".importlinter")],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_code_keeps_every_contract() -> None:
    """Every contract of ``.importlinter`` is kept by the code as it is."""
    checked = _lint(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


VIOLATIONS = {
    "platform-imports-a-feature": (
        "registry/http.py",
        "import broker.discovery.service",
        "The platform never imports a feature of broker or federation",
    ),
    "broker-imports-the-records-domain": (
        "broker/discovery/query.py",
        "import registry.records.service",
        "Broker and federation use the platform, never the registry's domain modules or the server",
    ),
    "federation-imports-the-server": (
        "federation/hops.py",
        "import registry.server.app",
        "Broker and federation use the platform, never the registry's domain modules or the server",
    ),
    "schemas-import-the-registry": ("schemas/types.py", "import registry.errors", "Schemas import nothing of ours"),
    "discovery-imports-subscriptions": (
        "broker/discovery/merge.py",
        "import broker.subscriptions.filters",
        "Discovery, subscriptions and federation are independent of one another",
    ),
    "a-lower-layer-imports-a-higher-one": (
        "registry/db/pool.py",
        "import registry.auth.scopes",
        "The registry's layers: each imports only the layers below it",
    ),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_a_deliberate_violation_breaks_its_contract(case: str, tmp_path: Path) -> None:
    """One forbidden import added to a copy of the code breaks the contract that forbids it (perhaps others too:
    what it imports may import further), and lint-imports fails."""
    module, line, contract = VIOLATIONS[case]
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # a deliberate violation\n", encoding="utf-8")
    checked = _lint(tmp_path)
    assert checked.returncode != 0
    assert f"{contract} BROKEN" in " ".join(checked.stdout.split()), checked.stdout
