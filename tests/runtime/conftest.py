"""Fixtures: a broker process per test, and a way to add node processes to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import Client
from tests.runtime.support import START_S, Proc, System, wait_until


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    sys_ = System(tmp_path)
    yield sys_
    sys_.stop_all()


@pytest.fixture
def broker(system: System) -> Proc:
    return system.run_broker()


@pytest.fixture
def client(system: System, broker: Proc) -> Iterator[Client]:
    with system.client() as c:
        yield c


def start_node(system: System, node_id: str, actors: str = "echo", *extra: str) -> Proc:
    """Start a node process and wait until it hosts its addresses (or gave up)."""
    proc = system.run(
        "--role", "node", "--node-id", node_id, "--actors", actors, *extra, name=node_id
    )
    wait_until(
        lambda: (
            proc.has_logged("hosting address")
            or proc.popen.poll() is not None
            or proc.has_logged("address refused")
        ),
        START_S,
        f"node {node_id} to start",
    )
    return proc
