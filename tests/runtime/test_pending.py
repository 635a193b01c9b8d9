"""The broker's table of forwarded requests (runtime/pending.py), over a real ROUTER socket:
a dead node's requests are answered once each, answered and stale ones are not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from protocols import demo, errors
from protocols.codec import decode_packet, open_body, pack_body
from protocols.envelope import Envelope, new_id
from runtime.pending import Pending
from runtime.router import Router


@pytest.fixture
def wired() -> Iterator[tuple[Pending, zmq.Socket]]:
    """A Pending on a Router whose ROUTER socket reaches one asker, ``client:a``."""
    context = zmq.Context.instance()
    router_socket = context.socket(zmq.ROUTER)
    router_socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
    endpoint = f"inproc://pending-{new_id()}"
    router_socket.bind(endpoint)
    asker = context.socket(zmq.DEALER)
    asker.setsockopt(zmq.IDENTITY, b"client:a")
    asker.connect(endpoint)
    # The ROUTER knows the asker once it has heard from it.
    asker.send(b"hello")
    assert router_socket.poll(5000)
    router_socket.recv_multipart()
    router = Router()
    router.socket = router_socket
    yield Pending(router, grace_s=1.0), asker
    asker.close(0)
    router_socket.close(0)


def request(text: str, deadline: float = 0.0) -> Envelope:
    body = pack_body(demo.Echo(text=text))
    return Envelope(id=new_id(), sender="client:a", target="echo", body=body, deadline=deadline)


def answers(asker: zmq.Socket) -> list[Envelope]:
    got = []
    while asker.poll(200):
        packet = decode_packet(asker.recv())
        assert isinstance(packet, Envelope)
        got.append(packet)
    return got


def test_a_dead_nodes_requests_are_answered_unavailable_once_each(
    wired: tuple[Pending, zmq.Socket],
) -> None:
    pending, asker = wired
    first, second, elsewhere = request("1"), request("2"), request("3")
    pending.forwarded(b"n1~x", b"client:a", first)
    pending.forwarded(b"n1~x", b"client:a", second)
    pending.forwarded(b"n2~y", b"client:a", elsewhere)

    assert pending.node_died(b"n1~x", "n1") == 2
    replies = answers(asker)
    assert sorted(r.reply_to for r in replies) == sorted([first.id, second.id])
    for reply in replies:
        error = open_body(reply.body)
        assert isinstance(error, errors.Unavailable)
        assert "node n1" in error.message and "may or may not" in error.message
    assert pending.node_died(b"n1~x", "n1") == 0  # never twice
    assert len(pending) == 1  # n2's request waits on


def test_an_answered_request_is_not_answered_again(wired: tuple[Pending, zmq.Socket]) -> None:
    pending, asker = wired
    sent = request("1")
    pending.forwarded(b"n1~x", b"client:a", sent)
    pending.answered(sent.answer(pack_body(demo.Echoed(text="1"))))
    assert len(pending) == 0
    assert pending.node_died(b"n1~x", "n1") == 0
    assert answers(asker) == []


def test_entries_long_past_their_deadline_are_dropped(wired: tuple[Pending, zmq.Socket]) -> None:
    pending, _ = wired
    now = time.time()
    pending.forwarded(b"n1~x", b"client:a", request("old", deadline=now - 5))
    pending.forwarded(b"n1~x", b"client:a", request("live", deadline=now + 60))
    pending.forwarded(b"n1~x", b"client:a", request("none"))
    pending.prune(now)
    assert len(pending) == 2
