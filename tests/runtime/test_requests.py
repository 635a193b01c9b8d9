"""Serialized access, bounded mailboxes, deadlines and idempotency, across processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from protocols import demo, errors
from protocols.events import ActorStateChanged, actor_topic
from runtime.client import Client
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import Proc, System

CLIENT_SCRIPT = """
import sys
from protocols import demo
from protocols.events import ActorStateChanged, actor_topic
from runtime.client import AsyncClient, AsyncSubscriber, Client
pair = tuple(sys.argv[3:5]) or None  # the broker's pair, when CURVE is on
with Client(sys.argv[1], curve_server_key=pair and pair[0], curve_key_pair=pair) as client:
    for _ in range(int(sys.argv[2])):
        client.request("echo", demo.Increment(by=1), timeout=60)
print("done")
"""


def test_eight_processes_count_exactly_and_never_concurrently(
    system: System, broker: Proc, client: Client
) -> None:
    start_node(system, "counter")
    keys = system.curve_pair or ()
    workers = [system.python(CLIENT_SCRIPT, system.broker, "1000", *keys) for _ in range(8)]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        assert out.strip() == "done"

    count = client.request("echo", demo.GetCount())
    assert count == demo.Count(value=8000, overlaps=0)


def test_full_mailbox_answers_busy(system: System, broker: Proc, client: Client) -> None:
    system.overrides["SWITCHBOARD__RUNTIME__MAILBOX_SIZE"] = "2"
    start_node(system, "small")
    sent = [client.send("echo", demo.Sleep(seconds=0.5), timeout=10)]
    sent += [client.send("echo", demo.Echo(text=str(i)), timeout=10) for i in range(6)]

    replies = dict(_collect(client, len(sent)))
    assert set(replies) == set(sent)  # every request answered exactly once
    kinds = [type(replies[i]).__name__ for i in sent]
    assert kinds.count("Busy") >= 3, kinds
    assert kinds[0] == "Slept"
    # Requests that were queued still ran, in order.
    echoed = [replies[i].text for i in sent if isinstance(replies[i], demo.Echoed)]
    assert echoed == sorted(echoed)
    assert client.request("echo", demo.Echo(text="after")) == demo.Echoed(text="after")


def test_expired_deadline_answers_timeout_once_and_drops_the_late_result(
    system: System, broker: Proc, client: Client
) -> None:
    start_node(system, "slow")
    request_id = client.send("echo", demo.Sleep(seconds=1.0), timeout=0.3)
    first = client.receive(5)
    assert first is not None
    assert first[0] == request_id
    assert isinstance(first[1], errors.Timeout)

    late = client.receive(2.0)  # the actor finishes at ~1 s: its result must not come
    assert late is None
    with pytest.raises(RequestError) as caught:
        client.request("echo", demo.Sleep(seconds=0.5), timeout=0.1)
    assert isinstance(caught.value.error, errors.Timeout)


def test_repeated_idempotency_key_runs_once(system: System, broker: Proc, client: Client) -> None:
    start_node(system, "once")
    first = client.request("echo", demo.Increment(by=10), idempotency_key="pay-42")
    again = client.request("echo", demo.Increment(by=10), idempotency_key="pay-42")
    other = client.request("echo", demo.Increment(by=1), idempotency_key="pay-43")

    assert first == again == demo.Count(value=10)
    assert other == demo.Count(value=11)
    assert client.request("echo", demo.GetCount()) == demo.Count(value=11)


def test_idempotency_holds_across_clients(system: System, broker: Proc, client: Client) -> None:
    start_node(system, "shared")
    with system.client() as other:
        a = client.request("echo", demo.Increment(by=3), idempotency_key="k")
        b = other.request("echo", demo.Increment(by=3), idempotency_key="k")
    assert a == b == demo.Count(value=3)


def _collect(client: Client, n: int) -> list[tuple[str, object]]:
    replies = []
    give_up = time.monotonic() + 20
    while len(replies) < n and time.monotonic() < give_up:
        reply = client.receive(1.0)
        if reply is not None:
            replies.append(reply)
    return replies


def test_deferred_reply_lets_the_actor_go_on(system: System, broker: Proc, client: Client) -> None:
    start_node(system, "deferring")
    slow = client.send("echo", demo.Later(seconds=0.5, text="late"), idempotency_key="L1")
    repeat = client.send("echo", demo.Later(seconds=0.5, text="late"), idempotency_key="L1")
    fast = client.send("echo", demo.Echo(text="now"))

    replies = _collect(client, 3)
    assert replies[0][0] == fast  # answered while the deferred one waits
    assert dict(replies) == {
        fast: demo.Echoed(text="now"),
        slow: demo.Echoed(text="late"),
        repeat: demo.Echoed(text="late"),
    }
    # The idempotency key ran the handler once, and later repeats get the first answer.
    assert client.request("echo", demo.GetCount()) == demo.Count(value=1)
    again = client.request("echo", demo.Later(seconds=5, text="other"), idempotency_key="L1")
    assert again == demo.Echoed(text="late")


async def test_async_client_and_subscriber(system: System, broker: Proc) -> None:
    start_node(system, "async")
    async with (
        system.async_subscriber([actor_topic("echo")]) as events,
        system.async_client() as client,
    ):
        replies = await asyncio.gather(
            *(client.request("echo", demo.Echo(text=str(i)), timeout=10) for i in range(50))
        )
        assert replies == [demo.Echoed(text=str(i)) for i in range(50)]
        with pytest.raises(RequestError) as caught:
            await client.request("echo", demo.Fail(reason="on purpose"), timeout=10)
        assert isinstance(caught.value.error, errors.Internal)
        while True:
            topic, event = await asyncio.wait_for(events.receive(), 10)
            assert topic == actor_topic("echo") and isinstance(event, ActorStateChanged)
            if event.state == "restarting":
                break
    assert event.reason == "RuntimeError: on purpose"


def test_actors_ask_each_other_across_nodes(system: System, broker: Proc, client: Client) -> None:
    start_node(system, "first")
    start_node(system, "second", "echo=other")
    relayed = client.request("echo", demo.Relay(target="other", text="via other"), timeout=10)
    assert relayed == demo.Echoed(text="via other")

    with pytest.raises(RequestError) as caught:
        client.request("echo", demo.Relay(target="nowhere", text="x"), timeout=10)
    assert isinstance(caught.value.error, errors.NoSuchAddress)

    # The other actor is busy past the relay's own deadline: Timeout comes back, once.
    client.send("other", demo.Sleep(seconds=1.5), timeout=10)
    with pytest.raises(RequestError) as caught:
        client.request("echo", demo.Relay(target="other", text="late", timeout=0.5), timeout=10)
    assert isinstance(caught.value.error, errors.Timeout)
