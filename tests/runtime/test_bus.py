"""Actors subscribe to the bus through the node: real broker, node and ZeroMQ sockets.

The broker and node run in this process on loopback tcp; a plain PUB socket stands in for
another process publishing, exactly as nodes publish (topic frame, then the event frame).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from protocols import demo
from protocols.base import Message
from protocols.codec import encode_packet
from protocols.events import NewPost, post_topic
from protocols.session import ChatMessage
from runtime.actor import Actor
from runtime.broker import Broker, BrokerOptions
from runtime.client import Client
from runtime.handlers import handles
from runtime.node import Node, NodeOptions
from tests.runtime.support import free_port, wait_until

CHANNEL = -100777


class Follower(Actor):
    """Keeps the ids of the posts of one channel, in the order they arrived."""

    def on_start(self) -> None:
        self.seen: list[int] = []
        self.ctx.subscribe(post_topic(CHANNEL))

    @handles(NewPost)
    def on_post(self, event: NewPost) -> None:
        self.seen.append(event.message.id)

    @handles(demo.Echo)
    def report(self, body: demo.Echo) -> Message:
        return demo.Echoed(text=" ".join(map(str, self.seen)))


@pytest.fixture
def system() -> Iterator[tuple[Client, zmq.Socket]]:
    endpoints = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("broker", "in", "out")}
    broker = Broker(
        BrokerOptions(
            endpoints=[endpoints["broker"]],
            events_in=[endpoints["in"]],
            events_out=[endpoints["out"]],
        )
    )
    broker.start()
    node = Node(
        NodeOptions(
            broker=endpoints["broker"], events_in=endpoints["in"], events_out=endpoints["out"]
        )
    )
    node.add("follower", Follower)
    node.start()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.connect(endpoints["in"])
    client = Client(endpoints["broker"])
    try:
        yield client, pub
    finally:
        client.close()
        pub.close(linger=0)
        node.stop()
        broker.stop()


def _publish(pub: zmq.Socket, channel: int, message_id: int) -> None:
    post = NewPost(
        account="reader",
        channel_id=channel,
        message=ChatMessage(id=message_id, chat_id=channel, date=0),
    )
    pub.send_multipart([post_topic(channel).encode(), encode_packet(post)])


def _seen(client: Client) -> list[int]:
    return [int(i) for i in client.request("follower", demo.Echo()).text.split()]


def test_a_subscribed_actor_gets_every_event_in_order_once_subscribed(
    system: tuple[Client, zmq.Socket],
) -> None:
    client, pub = system
    # The bus is at most once: events published before the subscription reached the
    # broker are lost. Publish a marker until one arrives, then the real stream.
    wait_until(lambda: _publish(pub, CHANNEL, 0) or _seen(client), 10, "the subscription")
    for i in range(1, 201):
        _publish(pub, CHANNEL * 10, i)  # "-1007770" starts with "-100777": must not match
        _publish(pub, CHANNEL, i)
    wait_until(lambda: _seen(client)[-1] == 200, 10, "200 posts")
    stream = [i for i in _seen(client) if i > 0]
    assert stream == list(range(1, 201))
