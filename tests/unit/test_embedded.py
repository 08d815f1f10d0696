"""Finding PostgreSQL's server programs for the embedded cluster, and saying how to get them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from registry.db.embedded import EmbeddedUnavailable, find_bin_dir, install_hint


def _fake_bin(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        program = folder / name
        program.write_text("#!/bin/sh\n", encoding="utf-8")
        program.chmod(0o755)
    return folder


def test_nothing_found_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With nothing on PATH, no matching folder and no pgserver wheel, the error gives the install commands."""
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "pgserver", None)  # importing it now fails as if it were not installed
    with pytest.raises(EmbeddedUnavailable) as caught:
        find_bin_dir(search=[str(tmp_path / "nothing-*" / "bin")])
    message = str(caught.value)
    assert message == install_hint()
    assert "apt-get install -y postgresql" in message
    assert "IEF_DATABASE_URL=" in message
    # The tests run from a clone: the wheel comes with the clone's own extra, by this interpreter's pip.
    assert "install -e '" in message
    assert "[embedded]'" in message


def _interpreter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("python", "pip"):
        (folder / name).write_text("#!/bin/sh\n", encoding="utf-8")
    return folder / "python"


def test_the_install_hint_fits_a_clone_and_an_installed_package(tmp_path: Path) -> None:
    """From a clone the hint is the clone's virtualenv pip with ``-e '.[embedded]'``; installed, the package's extra."""
    clone = tmp_path / "clone"
    python = _interpreter(clone / ".venv" / "bin")
    (clone / "pyproject.toml").write_text("[project]\nname = 'ief-registry'\n", encoding="utf-8")
    assert ".venv/bin/pip install -e '.[embedded]'\n" in install_hint(clone, clone, str(python))
    elsewhere = install_hint(tmp_path, clone, str(python))
    assert f"clone/.venv/bin/pip install -e '{clone}[embedded]'\n" in elsewhere

    site = tmp_path / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    installed = install_hint(tmp_path / "venv", site, str(_interpreter(tmp_path / "venv" / "bin")))
    assert "\nor install the bundled server wheel:  bin/pip install 'ief-registry[embedded]'\n" in installed
    assert "-e" not in installed


def test_newest_matching_folder_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Among folders matching a search pattern, the highest version number is chosen (12 before 9)."""
    monkeypatch.setenv("PATH", "")
    _fake_bin(tmp_path / "pg-9" / "bin")
    newest = _fake_bin(tmp_path / "pg-12" / "bin")
    (tmp_path / "pg-15" / "bin").mkdir(parents=True)  # no programs in it: skipped
    assert find_bin_dir(search=[str(tmp_path / "pg-*" / "bin")]) == newest


def test_configured_folder_without_programs_is_refused(tmp_path: Path) -> None:
    """IEF_EMBEDDED_BIN_DIR naming a folder without initdb and pg_ctl is an error naming the folder."""
    with pytest.raises(EmbeddedUnavailable, match="does not hold initdb"):
        find_bin_dir(str(tmp_path))
