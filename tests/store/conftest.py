"""Fixtures: a Store on a real SQLite file and in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.storage import Store


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "data" / "store.sqlite3" if request.param == "file" else ":memory:"
    opened = Store(path, clock=lambda: 5000.0)
    yield opened
    opened.close()
