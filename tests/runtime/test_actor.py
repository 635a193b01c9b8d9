"""Actors in process: the handler table, typed asks, events and supervision.

Each test hosts one actor in a real mailbox (its thread, supervision, idempotency) on a
fake port that records replies, asks and publishes (``runtime.testing``); no ZeroMQ, no
subprocess. What crosses processes (routing, deadlines, ownership) is tested in the
multi-process modules beside this one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading

import pytest

from actors.echo import EchoActor
from protocols import demo, errors
from protocols.base import Message
from protocols.envelope import Envelope
from protocols.events import ActorStateChanged, NewPost, SessionState, actor_topic, post_topic
from protocols.session import ChatMessage, GetMe, Me, User
from runtime.actor import Actor, ActorContext
from runtime.errors import RequestError, UnexpectedReply
from runtime.handlers import handles
from runtime.supervisor import RestartPolicy
from runtime.testing import ActorHarness, FakePort


def test_each_request_reaches_the_handler_declared_for_its_type() -> None:
    with ActorHarness(EchoActor) as echo:
        assert echo.request(demo.Echo(text="hi")) == demo.Echoed(text="hi")
        assert echo.request(demo.Increment(by=3)).value == 3
        assert echo.request(demo.GetCount()) == demo.Count(value=3)


def test_a_type_without_a_handler_is_answered_bad_request_naming_it() -> None:
    with ActorHarness(EchoActor, address="echo") as echo:
        reply = echo.ask(GetMe())
    assert reply == errors.BadRequest(message="echo does not answer GetMe")


def test_one_class_may_not_handle_a_type_twice() -> None:
    with pytest.raises(TypeError, match="handles Echo twice: a and b"):

        class Twice(Actor):
            @handles(demo.Echo)
            def a(self, body: demo.Echo) -> Message:
                return demo.Echoed()

            @handles(demo.Echo)
            def b(self, body: demo.Echo) -> Message:
                return demo.Echoed()


def test_handles_takes_message_types_only() -> None:
    with pytest.raises(TypeError, match="Message subclasses"):
        handles(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one"):
        handles()


class Shouter(EchoActor):
    """A subclass overrides one inherited handler and keeps the others."""

    @handles(demo.Echo)
    def shout(self, body: demo.Echo) -> Message:
        return demo.Echoed(text=body.text.upper())


def test_a_subclass_overrides_an_inherited_handler() -> None:
    with ActorHarness(Shouter) as actor:
        assert actor.request(demo.Echo(text="hi")) == demo.Echoed(text="HI")
        assert actor.request(demo.GetCount()) == demo.Count(value=0)


class Asker(Actor):
    """Coroutine handlers run on the loop; typed asks come back checked."""

    @handles(demo.Relay)
    async def relay(self, body: demo.Relay, envelope: Envelope) -> Message:
        me = await self.ctx.call("session:alice", GetMe(), timeout=body.timeout)
        return demo.Echoed(text=f"{me.user.first_name} via {envelope.sender}")


def test_a_coroutine_handler_replies_with_the_typed_answer() -> None:
    answers = {("session:alice", GetMe): Me(user=User(id=1, first_name="Alice"))}
    with ActorHarness(Asker, answers=answers) as actor:
        reply = actor.request(demo.Relay(target="session:alice"), sender="client:x")
        assert reply == demo.Echoed(text="Alice via client:x")
        assert actor.port.asks_of(GetMe) == [GetMe()]


def test_a_refused_ask_that_a_handler_does_not_catch_becomes_its_reply() -> None:
    answers = {GetMe: errors.Unauthorized(message="not logged in")}
    with ActorHarness(Asker, answers=answers) as actor:
        reply = actor.ask(demo.Relay(target="session:alice"))
        states = [e.state for e in actor.port.events_of(ActorStateChanged)]
    assert reply == errors.Unauthorized(message="not logged in")
    assert "restarting" not in states


class Buggy(Actor):
    """A coroutine handler with a bug of ours; counts requests to show a fresh instance."""

    def on_start(self) -> None:
        self.count = 0

    @handles(demo.Increment)
    async def increment(self, body: demo.Increment) -> Message:
        self.count += body.by
        if body.by < 0:
            raise ValueError("negative")
        return demo.Count(value=self.count)


def test_a_bug_in_a_coroutine_handler_answers_internal_and_restarts_the_actor() -> None:
    with ActorHarness(Buggy, address="buggy") as actor:
        assert actor.request(demo.Increment(by=2)).value == 2
        assert actor.ask(demo.Increment(by=-1)) == errors.Internal(message="ValueError in buggy")
        actor.wait_for(
            lambda: "running" in [e.state for e in actor.port.events_of(ActorStateChanged)][1:]
        )
        assert actor.request(demo.Increment(by=1)).value == 1  # a fresh instance


def test_a_reply_of_an_undeclared_type_is_unexpected() -> None:
    port = FakePort({("session:alice", GetMe): demo.Echoed(text="not a Me")})
    ctx = ActorContext("test:asker", port)
    with pytest.raises(UnexpectedReply, match="answered GetMe with Echoed, expected Me"):
        ctx.request("session:alice", GetMe()).result(5)
    with pytest.raises(RequestError) as caught:
        ctx.request("session:nobody", GetMe()).result(5)
    assert isinstance(caught.value.error, errors.NoSuchAddress)


def test_a_crash_answers_internal_and_restarts_with_fresh_state() -> None:
    with ActorHarness(EchoActor, address="echo") as echo:
        echo.request(demo.Increment(by=4))
        reply = echo.ask(demo.Fail(reason="boom"))
        assert reply == errors.Internal(message="RuntimeError in echo")
        assert echo.request(demo.GetCount()) == demo.Count(value=0)


def test_restart_intensity_is_bounded_and_the_failure_is_published() -> None:
    policy = RestartPolicy(max_restarts=3, within_s=60, backoff_initial_s=0.01, backoff_max_s=0.05)
    with ActorHarness(EchoActor, address="echo", policy=policy) as echo:
        for _ in range(4):
            assert isinstance(echo.ask(demo.Fail()), errors.Internal)
        reply = echo.ask(demo.Echo(text="anyone?"))
        assert isinstance(reply, errors.Unavailable)
        assert "failed after 3 restarts" in reply.message
        states = [e.state for e in echo.port.events_of(ActorStateChanged)]
        topics = {t for t, e in echo.port.published if isinstance(e, ActorStateChanged)}
    assert states.count("restarting") == 3 and states[-1] == "failed"
    assert topics == {actor_topic("echo")}


def test_a_repeated_idempotency_key_runs_once() -> None:
    with ActorHarness(EchoActor) as echo:
        first = echo.ask(demo.Increment(by=5), idempotency_key="k1")
        again = echo.ask(demo.Increment(by=5), idempotency_key="k1")
        assert first == again == demo.Count(value=5)
        assert echo.request(demo.GetCount()).value == 5


class FloodOnce(Actor):
    """Answers its first Increment with an error, then counts (sync and on the loop)."""

    def on_start(self) -> None:
        self.calls = 0

    @handles(demo.Increment)
    def increment(self, body: demo.Increment) -> Message:
        self.calls += 1
        if self.calls == 1:
            return errors.FloodWait(retry_after=1.0)
        return demo.Count(value=self.calls)

    @handles(demo.Echo)
    async def echo(self, body: demo.Echo) -> Message:
        self.calls += 1
        if self.calls == 1:
            return errors.Timeout(message="not yet")
        return demo.Echoed(text=body.text)


@pytest.mark.parametrize("body", [demo.Increment(by=1), demo.Echo(text="hi")])
def test_an_error_reply_is_not_remembered_for_its_key(body: Message) -> None:
    with ActorHarness(FloodOnce) as actor:
        first = actor.ask(body, idempotency_key="k")
        second = actor.ask(body, idempotency_key="k")
        third = actor.ask(body, idempotency_key="k")
    assert isinstance(first, errors.Error)
    assert not isinstance(second, errors.Error) and second == third


def test_a_deferred_reply_lets_the_actor_go_on() -> None:
    with ActorHarness(EchoActor) as echo:
        later = echo.send(demo.Later(seconds=0.5, text="late"))
        assert echo.request(demo.Echo(text="now")) == demo.Echoed(text="now")
        assert later not in echo.port.replies
        assert echo.reply(later) == demo.Echoed(text="late")


class Watcher(Actor):
    """Subscribes to posts; counts them on the loop; crashes on a post saying so."""

    def on_start(self) -> None:
        self.seen: list[int] = []
        self.states: list[str] = []
        self.ctx.subscribe(post_topic())

    @handles(NewPost)
    async def on_post(self, event: NewPost) -> None:
        await asyncio.sleep(0)
        self.seen.append(event.message.id)

    @handles(SessionState)
    def on_state(self, event: SessionState) -> None:
        if event.state == "failed":
            raise RuntimeError("told to fail")
        self.states.append(event.state)

    @handles(demo.GetCount)
    def count(self, body: demo.GetCount) -> Message:
        return demo.Count(value=len(self.seen) + len(self.states))

    @handles(demo.Echo)
    def tell_seen(self, body: demo.Echo) -> Message:
        return demo.Echoed(text=" ".join(map(str, self.seen)))


def _post(message_id: int) -> NewPost:
    return NewPost(
        account="reader",
        channel_id=-100123,
        message=ChatMessage(id=message_id, chat_id=-100123, date=0),
    )


def test_events_reach_their_handlers_in_order() -> None:
    with ActorHarness(Watcher) as watcher:
        # on_start subscribes, on the mailbox's thread: wait for it.
        watcher.wait_for(lambda: watcher.port.subscriptions == [post_topic()])
        for i in range(1, 51):
            watcher.event(post_topic(-100123), _post(i))
        watcher.event("session.reader.", SessionState(account="reader", state="connected"))
        watcher.wait_for(lambda: watcher.request(demo.GetCount()).value == 51)
        seen = watcher.request(demo.Echo()).text
        assert seen == " ".join(str(i) for i in range(1, 51))


def test_an_event_without_a_handler_is_ignored_and_a_crash_restarts() -> None:
    with ActorHarness(Watcher) as watcher:
        watcher.event("x.", demo.Echoed(text="nobody handles me"))
        watcher.event("session.r.", SessionState(account="r", state="connected"))
        watcher.wait_for(lambda: watcher.request(demo.GetCount()).value == 1)
        watcher.event("session.r.", SessionState(account="r", state="failed"))
        watcher.wait_for(
            lambda: "restarting" in [e.state for e in watcher.port.events_of(ActorStateChanged)]
        )
        assert watcher.request(demo.GetCount()).value == 0  # a fresh instance


def test_a_future_returned_by_a_handler_is_a_deferred_reply() -> None:
    pending: concurrent.futures.Future[Message] = concurrent.futures.Future()

    class Deferring(Actor):
        @handles(demo.Echo)
        def echo(self, body: demo.Echo) -> concurrent.futures.Future[Message]:
            return pending

    with ActorHarness(Deferring) as actor:
        request_id = actor.send(demo.Echo(text="x"))
        assert request_id not in actor.port.replies
        pending.set_result(demo.Echoed(text="settled"))
        assert actor.reply(request_id) == demo.Echoed(text="settled")


class Backlogged(Actor):
    """Holds its first message until ``gate`` is set; records the backlog each message
    saw and each call of ``on_idle`` in ``seen``."""

    def __init__(self, ctx: ActorContext, gate: threading.Event, seen: list[str]) -> None:
        super().__init__(ctx)
        self.gate = gate
        self.seen = seen

    def on_idle(self) -> None:
        self.seen.append(f"idle with {self.ctx.backlog} waiting")

    @handles(demo.Echo)
    def echo(self, body: demo.Echo) -> Message:
        self.gate.wait(5)
        self.seen.append(f"{body.text} with {self.ctx.backlog} waiting")
        return demo.Echoed(text=body.text)


def test_backlog_counts_what_waits_and_on_idle_runs_when_nothing_does() -> None:
    gate = threading.Event()
    seen: list[str] = []
    with ActorHarness(functools.partial(Backlogged, gate=gate, seen=seen)) as actor:
        ids = [actor.send(demo.Echo(text=str(n))) for n in range(4)]
        gate.set()
        for request_id in ids:
            actor.reply(request_id)
        actor.wait_for(lambda: seen and "idle" in seen[-1])
    waited = [f"{n} with {3 - n} waiting" for n in range(4)]
    assert seen == [*waited, "idle with 0 waiting"]
