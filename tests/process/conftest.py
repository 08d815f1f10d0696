"""Fixtures of the process tests: a temporary folder that PostgreSQL's user can reach."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.process.runner import Workdir


@pytest.fixture
def workdir() -> Iterator[Workdir]:
    """A temporary folder for data directories; clusters left running in it are stopped at the end."""
    folder = Workdir()
    try:
        yield folder
    finally:
        folder.cleanup()
