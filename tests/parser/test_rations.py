"""The parser keeps its readers inside Telegram's rations: the 500-channel cap and the
resolve budget, end to end (sandbox, reader sessions, store and parser processes).

Each test has its own system: the rations it exercises are the state of the readers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocols import errors
from protocols import parser as p
from protocols import store as st
from runtime.client import Client
from runtime.errors import RequestError
from sandbox import SandboxThread
from tests.parser.support import FAST_PARSER, PARSER, STORE, TIMEOUT, Monitor, marked

System = Callable[[list[str], dict[str, str]], tuple[Monitor, Client]]


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[SandboxThread, System]]:
    sandbox = SandboxThread().start()
    started: list[tuple[Monitor, Client]] = []

    def start(readers: list[str], parser: dict[str, str]) -> tuple[Monitor, Client]:
        monitor = Monitor(tmp_path, sandbox=sandbox, parser={**FAST_PARSER, **parser})
        client = monitor.start(readers, monitor.client)
        started.append((monitor, client))
        return monitor, client

    try:
        yield sandbox, start
    finally:
        for monitor, client in started:
            client.close()
            monitor.stop_all()
        sandbox.stop()


def add(client: Client, username: str) -> p.ChannelAdded | errors.Error:
    try:
        return client.request(PARSER, p.AddChannel(ref=f"@{username}"), timeout=TIMEOUT)
    except RequestError as exc:
        return exc.error


def test_a_reader_at_its_cap_hands_the_channel_to_the_other_and_none_left_says_so(
    system: tuple[SandboxThread, System],
) -> None:
    sandbox, start = system
    control = sandbox.control
    monitor, client = start(["r1", "r2"], {})
    control.set_limits(channels_per_user=2)
    for n in range(2):  # r1 is at Telegram's cap through channels the parser never saw
        other = control.create_channel(f"Elsewhere {n}", username=f"elsewhere{n}x")
        control.add_member(other.id, monitor.users["r1"].id)
    for n in range(3):
        control.create_channel(f"Capped {n}", username=f"capped{n}x")
    first, second = add(client, "capped0x"), add(client, "capped1x")
    assert isinstance(first, p.ChannelAdded) and first.channel.reader == "r2"
    assert isinstance(second, p.ChannelAdded) and second.channel.reader == "r2"
    third = add(client, "capped2x")
    assert isinstance(third, errors.Unavailable), third
    assert "CHANNELS_TOO_MUCH" in third.message
    kept = client.request(STORE, st.ListChannels(), timeout=TIMEOUT).channels
    assert sorted(c.username for c in kept) == ["capped0x", "capped1x"]


def test_adding_100_channels_never_exceeds_the_resolve_budget(
    system: tuple[SandboxThread, System],
) -> None:
    sandbox, start = system
    control = sandbox.control
    monitor, client = start(["r1"], {"resolves_per_min": "10", "resolves_per_day": "15"})
    channels = [control.create_channel(f"Many {n}", username=f"many{n}chan") for n in range(100)]
    replies = [add(client, c.username or "") for c in channels]
    added = [r for r in replies if isinstance(r, p.ChannelAdded)]
    refused = [r for r in replies if not isinstance(r, p.ChannelAdded)]
    assert len(added) == 10
    assert all(isinstance(r, errors.FloodWait) and 0 < r.retry_after <= 60 for r in refused)
    times = control.call_times(monitor.users["r1"].id, "contacts.resolveUsername")
    assert len(times) == 10  # the refused ones never reached Telegram
    kept = client.request(STORE, st.ListChannels(), timeout=TIMEOUT).channels
    assert {c.id for c in kept} == {marked(c) for c in channels[:10]}
