"""Single owner per address, takeover after a node dies, fencing of a stale owner."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import demo, errors
from protocols.broker import GetStatus, Status, lease_bounds
from runtime.client import Client
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import (
    OWNERSHIP_TRANSPORTS,
    SHORT_HEARTBEAT_S,
    SHORT_LIVENESS,
    Proc,
    System,
    current_owner,
    live_intervals,
    wait_until,
)

# The README's bound: a dead node's addresses move on within its lease's expiry (counted
# from its last heartbeat) plus a quarter interval.
RELEASE_BOUND_S = lease_bounds(SHORT_HEARTBEAT_S, SHORT_LIVENESS)[1] + SHORT_HEARTBEAT_S / 4


@pytest.fixture(params=OWNERSHIP_TRANSPORTS)
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    """The short lease (these tests measure takeover and expiry), on this run's transport
    and on tcp with CURVE."""
    system = System(tmp_path, transport=request.param)
    system.short_lease()
    yield system
    system.stop_all()


def test_second_node_is_refused_with_the_owner_named(system: System, broker: Proc) -> None:
    first = start_node(system, "first")
    second = system.run("--role", "node", "--node-id", "second", "--actors", "echo", name="second")

    assert second.popen.wait(20) == 3
    message = second.log_text()
    assert "echo is owned by node first" in message
    assert f"pid {first.pid}" in message
    assert system.owner_of("echo") == "first"


def test_kill_9_releases_the_address_and_a_standby_takes_over(
    system: System, broker: Proc, client: Client
) -> None:
    owner = start_node(system, "owner")
    client.request("echo", demo.Increment(by=5))
    standby = system.run(
        "--role", "node", "--node-id", "standby", "--actors", "echo", "--standby", name="standby"
    )
    wait_until(lambda: standby.has_logged("address refused"), 20, "the standby to be refused")

    os.kill(owner.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: current_owner(client, "echo") == "standby", 20, "the takeover")
    took = time.monotonic() - killed_at

    # Generous slack over the bound: the check runs on a shared, noisy machine.
    assert took < RELEASE_BOUND_S * 5, f"takeover took {took:.2f}s"
    count = client.request("echo", demo.GetCount())
    assert isinstance(count, demo.Count) and count.value == 0  # a fresh actor, on the standby


def test_a_reply_from_a_stale_owner_is_dropped(
    system: System, broker: Proc, client: Client
) -> None:
    owner = start_node(system, "owner")
    client.request("echo", demo.Increment(by=7))
    standby = system.run(
        "--role", "node", "--node-id", "standby", "--actors", "echo", "--standby", name="standby"
    )
    wait_until(lambda: standby.has_logged("address refused"), 20, "the standby to be refused")

    # The owner starts a slow request, then freezes (as a paused VM or a GC stall would).
    slow = client.send("echo", demo.Sleep(seconds=1.0), timeout=8.0)
    time.sleep(0.3)
    owner.signal(signal.SIGSTOP)
    try:
        with system.client() as watcher:  # its requests would drop the answers to `slow`
            wait_until(lambda: current_owner(watcher, "echo") == "standby", 20, "the takeover")
    finally:
        owner.signal(signal.SIGCONT)

    # Thawed, the old owner finds its lease expired and stops the actor; if the actor's
    # late reply gets out first, it carries the old epoch and the broker drops it.
    wait_until(lambda: owner.has_logged("address refused"), 20, "the old owner to stand down")
    assert owner.has_logged("lease expired, actors stopped until the broker confirms the grant")
    replies = []
    while (reply := client.receive(1.0)) is not None:
        replies.append(reply)
    # One answer: the broker's, when it presumed the owner dead; never the late Slept.
    assert [request_id for request_id, _ in replies] == [slow], replies
    assert isinstance(replies[0][1], errors.Unavailable), replies

    count = client.request("echo", demo.GetCount())
    assert isinstance(count, demo.Count) and count.value == 0  # the standby's actor answers


def test_a_request_held_by_a_killed_node_is_answered_unavailable_not_left_to_time_out(
    system: System, broker: Proc, client: Client
) -> None:
    owner = start_node(system, "owner")
    assert client.request("echo", demo.Echo(text="up")) == demo.Echoed(text="up")
    slow = client.send("echo", demo.Sleep(seconds=120.0), timeout=120.0)
    # One socket, in order: once the broker answers this, it has forwarded the request.
    assert isinstance(client.request("broker", GetStatus()), Status)
    owner.signal(signal.SIGKILL)
    owner.popen.wait()

    got = client.receive(60.0)  # well before the request's own deadline
    assert got is not None, "no answer before the deadline"
    request_id, body = got
    assert request_id == slow
    assert isinstance(body, errors.Unavailable), body
    assert "node owner" in body.message and "may or may not" in body.message


def test_request_to_an_unknown_address_is_answered(client: Client) -> None:
    with pytest.raises(RequestError) as caught:
        client.request("nobody-here", demo.Echo(text="x"), timeout=5)
    assert isinstance(caught.value.error, errors.NoSuchAddress)
    assert caught.value.error.address == "nobody-here"


def test_a_broker_restart_longer_than_the_lease_gives_the_address_back_to_its_holder(
    system: System,
) -> None:
    # The lease (0.6 s) is shorter than a broker's start-up: the owner stops its actor
    # while the broker is away; the new broker knows (from its state file) that the owner
    # held the address last, so the waiting standby does not get it.
    broker_env = {"SWITCHBOARD__DATA_DIR": str(system.tmp / "broker"), **system.endpoints()}
    broker = system.run_broker("broker-0", env=broker_env)
    owner = start_node(system, "owner")
    standby = start_node(system, "standby", "echo", "--standby")
    for round_ in (1, 2):
        broker.signal(signal.SIGKILL)
        broker.popen.wait()
        broker = system.run_broker(f"broker-{round_}", env=broker_env)
        with system.client() as client:
            wait_until(lambda: current_owner(client, "echo") == "owner", 30, "the owner back")
            assert client.request("echo", demo.Echo(text="hi")) == demo.Echoed(text="hi")
    assert owner.has_logged("lease expired, actors stopped until the broker confirms the grant")
    assert live_intervals(standby, "standby", "echo") == []
    assert len(live_intervals(owner, "owner", "echo")) == 3
