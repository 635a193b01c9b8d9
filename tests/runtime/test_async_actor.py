"""Actors whose mailbox lives on the asyncio loop (``AsyncActor``): no thread per actor,
and the mailbox's guarantees as for threaded actors.

Each test hosts the actor in a real mailbox on a fake port (``runtime.testing``), as
``test_actor`` does for threaded actors.
"""

from __future__ import annotations

import asyncio
import threading

from protocols import demo, errors
from protocols.base import Message
from protocols.events import ActorStateChanged, NewPost, post_topic
from protocols.session import ChatMessage
from runtime.actor import ActorContext, AsyncActor
from runtime.handlers import handles
from runtime.loop import get_loop_thread
from runtime.supervisor import RestartPolicy
from runtime.testing import ActorHarness

LOG: list[str] = []  # lifecycle hooks, in the order they ran, across instances


class Counter(AsyncActor):
    """Counts; ``Fail`` crashes it; ``Later`` waits until ``release`` is set (on the loop)."""

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.count = 0
        self.runs = 0
        self.seen: list[int] = []
        self.release = asyncio.Event()

    async def on_start(self) -> None:
        await asyncio.sleep(0)  # a real await: the hook is a coroutine on the loop
        assert get_loop_thread().in_loop_thread()
        LOG.append("start")

    async def on_stop(self) -> None:
        await asyncio.sleep(0)
        LOG.append("stop")

    @handles(demo.Increment)
    def increment(self, body: demo.Increment) -> Message:
        self.count += body.by
        return demo.Count(value=self.count)

    @handles(demo.GetCount)
    def get_count(self, body: demo.GetCount) -> Message:
        return demo.Count(value=self.count)

    @handles(demo.Fail)
    def fail(self, body: demo.Fail) -> Message:
        raise RuntimeError(body.reason)

    @handles(demo.Later)
    async def later(self, body: demo.Later) -> Message:
        self.runs += 1
        await self.release.wait()
        return demo.Echoed(text=f"{body.text} {self.runs}")

    @handles(demo.Echo)
    def open_gate(self, body: demo.Echo) -> Message:
        self.release.set()
        return demo.Echoed(text=body.text)

    @handles(NewPost)
    def on_post(self, event: NewPost) -> None:
        self.seen.append(event.message.id)
        self.count = len(self.seen)


def _post(message_id: int) -> NewPost:
    return NewPost(
        account="a", channel_id=-100, message=ChatMessage(id=message_id, chat_id=-100, date=0)
    )


def test_many_async_actors_take_no_thread_of_their_own() -> None:
    get_loop_thread()
    before = threading.active_count()
    harnesses = [ActorHarness(Counter, address=f"counter:{i}") for i in range(50)]
    try:
        for i, h in enumerate(harnesses):
            assert h.request(demo.Increment(by=i)).value == i
        assert threading.active_count() == before
    finally:
        for h in harnesses:
            h.stop()


def test_a_crash_answers_internal_and_restarts_after_awaiting_the_hooks() -> None:
    LOG.clear()
    with ActorHarness(Counter, address="counter") as actor:
        actor.request(demo.Increment(by=4))
        assert actor.ask(demo.Fail(reason="boom")) == errors.Internal(
            message="RuntimeError in counter"
        )
        assert actor.request(demo.GetCount()).value == 0  # a fresh instance
        assert LOG == ["start", "stop", "start"]
    assert LOG == ["start", "stop", "start", "stop"]


def test_restart_intensity_is_bounded() -> None:
    policy = RestartPolicy(max_restarts=2, within_s=60, backoff_initial_s=0.01, backoff_max_s=0.05)
    with ActorHarness(Counter, address="counter", policy=policy) as actor:
        for _ in range(3):
            assert isinstance(actor.ask(demo.Fail()), errors.Internal)
        reply = actor.ask(demo.GetCount())
        assert isinstance(reply, errors.Unavailable)
        assert "failed after 2 restarts" in reply.message
        assert [e.state for e in actor.port.events_of(ActorStateChanged)][-1] == "failed"


def test_a_repeat_of_an_in_flight_key_gets_the_first_reply_and_runs_nothing() -> None:
    with ActorHarness(Counter) as actor:
        first = actor.send(demo.Later(seconds=0, text="sent"), idempotency_key="k")
        repeat = actor.send(demo.Later(seconds=0, text="sent"), idempotency_key="k")
        # The deferred request lets the mailbox go on: the gate opens behind it.
        assert actor.request(demo.Echo(text="open")).text == "open"
        assert actor.reply(first) == actor.reply(repeat) == demo.Echoed(text="sent 1")
        assert actor.ask(demo.Later(seconds=0, text="sent"), idempotency_key="k") == demo.Echoed(
            text="sent 1"
        )


def test_events_arrive_in_order_between_requests() -> None:
    with ActorHarness(Counter) as actor:
        for message_id in range(1, 101):
            actor.event(post_topic(-100), _post(message_id))
        assert actor.request(demo.GetCount()).value == 100


def test_stop_handles_what_is_queued_then_awaits_on_stop() -> None:
    LOG.clear()
    actor = ActorHarness(Counter)
    actor.wait_for(lambda: actor.mailbox.info().state == "running")
    ids = [actor.send(demo.Increment(by=1)) for _ in range(20)]
    actor.stop()
    assert [actor.reply(i, timeout=0) for i in ids][-1] == demo.Count(value=20)
    assert LOG == ["start", "stop"]
    assert actor.mailbox.info().state == "stopped"
