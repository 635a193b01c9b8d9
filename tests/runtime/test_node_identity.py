"""A node is its id plus a per-process instance; no outside peer can stall or replace it.

The world: a broker and node ``nD`` hosting ``echo`` (real processes), and peers that
misbehave: a second process started with the same node id, a bare DEALER that connects
under the node id (what ``status`` shows) and says it is ``nD``, one that floods the
broker with garbage without reading, and a node configured with the wrong CURVE key.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
import zmq

from protocols import demo
from protocols.broker import Claim, Heartbeat, Ready, Refused, lease_bounds
from protocols.codec import decode_packet, encode_packet
from runtime.client import Client
from runtime.curve import new_key_pair
from tests.runtime.conftest import start_node
from tests.runtime.support import (
    HEARTBEAT_S,
    LIVENESS,
    Proc,
    System,
    current_owner,
    wait_until,
)

LEASE_S, EXPIRY_S = lease_bounds(HEARTBEAT_S, LIVENESS)


@pytest.fixture
def node(system: System, broker: Proc) -> Proc:
    return start_node(system, "nD")


@pytest.fixture
def raw(system: System, broker: Proc) -> Iterator[zmq.Socket]:
    """A bare DEALER on the broker named as the node: its id is all ``status`` shows."""
    sock = system.raw_dealer(b"nD")
    yield sock
    sock.close()


def _serves_through(client: Client, node: Proc, seconds: float) -> None:
    """The node answers every request for ``seconds`` (more than a lease) and keeps it."""
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        assert client.request("echo", demo.Echo(text="hi"), timeout=5) == demo.Echoed(text="hi")
        time.sleep(0.05)
    assert current_owner(client, "echo") == "nD"
    assert not node.has_logged("lease expired, actors stopped until the broker confirms the grant")
    assert not node.has_logged("address revoked")


def test_a_second_process_with_a_running_node_id_is_refused(
    system: System, node: Proc, client: Client
) -> None:
    second = system.run("--role", "node", "--node-id", "nD", "--actors", "echo=other", name="nD2")

    assert second.popen.wait(30) == 3
    running = f"(host {socket.gethostname()}, pid {node.pid}"
    assert f"node id nD is in use by a live process {running}" in second.log_text()
    assert "Traceback" not in second.log_text()
    status = system.status()
    assert [(n.node_id, n.pid) for n in status.nodes] == [("nD", node.pid)]
    assert current_owner(client, "other") is None
    _serves_through(client, node, 2 * EXPIRY_S)


def test_a_peer_speaking_as_the_node_cannot_take_it_over(
    raw: zmq.Socket, node: Proc, client: Client
) -> None:
    hello = Ready(node_id="nD", host=socket.gethostname(), pid=os.getpid(), addresses=["echo"])
    raw.send(encode_packet(hello))
    assert raw.poll(10_000)
    refused = decode_packet(raw.recv())
    assert isinstance(refused, Refused) and refused.address == "node:nD"
    assert refused.owner.pid == node.pid

    for packet in (Heartbeat(seq=1), Claim(address="echo", seq=2), hello):
        raw.send(encode_packet(packet))
    raw.send(b"\x00garbage")
    _serves_through(client, node, 2 * EXPIRY_S)


def test_a_garbage_flood_does_not_stall_the_node(
    system: System, node: Proc, client: Client
) -> None:
    flood = system.raw_dealer(b"flooder", send_hwm=0)  # queue all, never block
    try:
        # It never reads its BadRequest answers: the broker's sends to it must not block.
        for i in range(20_000):
            flood.send(b"\x01not msgpack %d" % i)
        _serves_through(client, node, 2 * EXPIRY_S)
    finally:
        flood.close()


def test_a_node_with_the_wrong_curve_key_says_so_within_the_lease(system: System) -> None:
    _, secret = new_key_pair()
    stranger, _ = new_key_pair()
    broker = system.run_broker(env={"SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY": secret})
    started = time.monotonic()
    node = system.run(
        "--role",
        "node",
        "--node-id",
        "lost",
        "--actors",
        "echo",
        name="lost",
        env={"SWITCHBOARD__RUNTIME__CURVE_SERVER_KEY": stranger},
    )
    event = wait_until(
        lambda: next((e for e in node.log_events() if e["event"] == "broker unreachable"), None),
        30,
        "the node to report the unreachable broker",
    )
    took = time.monotonic() - started
    assert isinstance(event, dict) and "CURVE key" in str(event["cause"])
    # Reported once the lease passed without an answer, at the next heartbeat (the rest is
    # the process's start-up: slack for a busy machine).
    assert took < LEASE_S + HEARTBEAT_S + 15, took
    assert node.popen.wait(60) == 1
    assert "CURVE key" in node.log_text() and "Traceback" not in node.log_text()
    assert broker.popen.poll() is None
