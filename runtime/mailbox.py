"""The mailbox: a runner that feeds one actor its requests, one at a time.

An ordinary :class:`~runtime.actor.Actor` gets a pykka thread of its own. An
:class:`~runtime.actor.AsyncActor` gets a task on the process's asyncio loop instead
(:mod:`runtime.loop`): an idle one costs a queue and a suspended coroutine, not a thread,
so a node can host hundreds. Both runners share everything but the waiting.

Guarantees (both runners):

* one message at a time, in arrival order (pykka's inbox and thread, or an asyncio queue
  and one task);
* bounded: the node checks :attr:`Mailbox.depth` before enqueueing and answers ``Busy``
  when it is at ``capacity``, so nothing is dropped silently;
* bus events the actor subscribed to (:meth:`Mailbox.deliver`) wait in the same queue and
  reach :meth:`Actor.on_event` in order; past ``capacity`` an event is dropped and counted
  (the bus is at most once anyway), never a request;
* every request it takes gets exactly one reply: the handler's result, ``BadRequest``
  for a body it cannot open, ``Internal`` for a crash, ``Unavailable`` once the actor
  has failed, or the first reply again for a repeated idempotency key (an error reply
  is not remembered: a repeat after an error runs again);
* a crash is supervised (:mod:`runtime.supervisor`): the actor is rebuilt after a
  backoff while queued requests wait, or marked failed past the restart intensity. A
  deferred reply's future that raises is a crash of the instance that made it, except a
  ``RequestError`` (a typed ask refused), whose typed error becomes the reply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pykka

from protocols import errors
from protocols.base import Message
from protocols.broker import ActorInfo
from protocols.codec import FrameError, body_type, open_body, pack_body
from protocols.envelope import Envelope
from protocols.events import ActorStateChanged, actor_topic
from runtime.actor import Actor, ActorContext, ActorFactory, AsyncActor, Port, on_loop
from runtime.errors import RequestError
from runtime.idempotency import IdempotencyCache
from runtime.loop import get_loop_thread
from runtime.supervisor import ActorState, RestartPolicy, Supervision


@dataclass(frozen=True)
class _Event:
    """A bus event for the actor: ``event`` published under ``topic``."""

    topic: str
    event: Message


@dataclass(frozen=True)
class _Crashed:
    """A deferred request of actor instance number ``generation`` failed with ``error``."""

    error: BaseException
    envelope: Envelope
    generation: int


@dataclass(frozen=True)
class _Settled:
    """A deferred reply is ready: ``future`` settled for the request ``envelope``."""

    envelope: Envelope
    future: concurrent.futures.Future[Message]
    started: float  # when the request was taken from the mailbox (time.monotonic)
    generation: int  # which actor instance made the future


class Mailbox:
    """Hosts one supervised actor at one address (the node's view of it)."""

    def __init__(
        self,
        address: str,
        factory: ActorFactory,
        port: Port,
        policy: RestartPolicy,
        capacity: int,
        epoch: int = 0,
    ) -> None:
        self.address = address
        self.capacity = capacity
        self.ctx = ActorContext(address, port, lambda: self.depth)
        # Set before the runner starts: an on_start that sends (on the loop, at once) must
        # carry the grant's epoch, or the broker drops its packets as a stale owner's.
        self.ctx.epoch = epoch
        self.supervision = Supervision(policy)
        self.stopping = threading.Event()
        # Set when the address may have moved on: queued requests are skipped, not run.
        self.abandoned = threading.Event()
        self.enqueued = 0  # written by the node's thread only
        self.dequeued = 0  # written by the runner's thread only
        self.events_enqueued = 0  # written by the bus thread only
        self.events_dequeued = 0  # written by the runner's thread only
        self.events_dropped = 0  # written by the bus thread only
        if on_loop(factory):
            runner = _LoopRunner(self, factory, port)
            self._tell: Callable[[Any], None] = runner.tell
            self._stop: Callable[[float | None], None] = runner.stop
        else:
            ref = _ThreadRunner.start(self, factory, port)
            self._tell = ref.tell
            self._stop = lambda timeout: ref.stop(block=timeout is not None, timeout=timeout)

    @property
    def depth(self) -> int:
        """Requests and events queued and not yet taken (safe to read from any thread)."""
        return self.enqueued - self.dequeued + self.events_enqueued - self.events_dequeued

    def info(self) -> ActorInfo:
        """This actor as status shows it."""
        s = self.supervision
        failed = s.state is ActorState.FAILED
        return ActorInfo(
            address=self.address,
            state=s.state.value,
            mailbox=self.depth,
            restarts=s.restarts,
            last_error=s.describe_failure() if failed else s.last_error,
        )

    def tell(self, envelope: Envelope) -> None:
        """Queue a request (the caller checked :attr:`depth` against :attr:`capacity`)."""
        self.enqueued += 1
        self._tell(envelope)

    def deliver(self, topic: str, event: Message) -> bool:
        """Queue a bus event for the actor; False (and counted) if the mailbox is full.

        Called from one thread only (the node's bus listener).
        """
        if self.depth >= self.capacity or self.stopping.is_set():
            self.events_dropped += 1
            return False
        self.events_enqueued += 1
        self._tell(_Event(topic, event))
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the queued requests are handled (block up to ``timeout``).

        With ``timeout`` None, return at once and let the mailbox drain by itself.
        Raises pykka's Timeout if it does not drain in time.
        """
        self.stopping.set()
        self._stop(timeout)

    def abandon(self) -> None:
        """Stop as soon as the current message is done, skipping queued requests.

        For an address this node may no longer own: the node answers what was queued.
        Returns at once; the actor's ``on_stop`` runs on its runner.
        """
        self.abandoned.set()
        self.stop()


class _Core:
    """What both runners share: taking one message, replies, idempotency, crash records.

    Nothing here blocks or waits. A crash only marks the actor broken (:meth:`_fail`);
    the runner then retires it, waits out the backoff and builds a new one before it
    takes the next message, each runner in its own way of waiting.
    """

    def __init__(self, mailbox: Mailbox, factory: ActorFactory, port: Port) -> None:
        self.address = mailbox.address
        self.ctx = mailbox.ctx
        self._mailbox = mailbox
        self._supervision = mailbox.supervision
        self._stopping = mailbox.stopping
        self._factory = factory
        self._port = port
        self._actor: Actor | None = None
        self._broken: Actor | None = None  # crashed, not retired yet
        self._error: str | None = None  # the crash waiting to be supervised
        self._generation = 0  # bumped for every actor instance built
        self._idempotency = IdempotencyCache()
        # Idempotency keys whose first request is deferred, with every request waiting on it.
        self._in_flight: dict[str, list[Envelope]] = {}

    def _hand_back(self, item: _Settled | _Crashed) -> None:
        """Queue a settled future or a crash for this runner (from any thread)."""
        raise NotImplementedError

    # -- one message ---------------------------------------------------------------------

    def _receive(self, message: Envelope | _Event | _Settled | _Crashed) -> None:
        if isinstance(message, _Settled):
            self._settle(message)
        elif isinstance(message, _Crashed):
            # A bug in a deferred handler is a crash like any other, unless the instance
            # that failed was already replaced.
            if message.generation == self._generation:
                self._fail(message.error, message.envelope)
        elif isinstance(message, _Event):
            self._mailbox.events_dequeued += 1
            self._notify(message)
        else:
            self._mailbox.dequeued += 1
            started = time.monotonic()
            reply = self._answer(message, started)
            if reply is not None:
                self._reply(message, reply, started)
        if self._mailbox.depth == 0:
            self._idle()

    def _idle(self) -> None:
        """Let the actor finish batched work: nothing waits (a later message calls again)."""
        if self._actor is None:
            return
        try:
            self._actor.on_idle()
        except Exception as exc:
            self._fail(exc, None)

    def _reply(self, envelope: Envelope, body: msgspec.Raw, started: float) -> None:
        """Send the reply; at debug level, log the request, its reply and its latency."""
        self._port.send_reply(envelope.answer(body, sender=self.address))
        if self.ctx.log.is_enabled_for(logging.DEBUG):
            self.ctx.log.debug(
                "request",
                type=body_type(envelope.body),
                reply=body_type(body),
                sender=envelope.sender,
                request_id=envelope.id,
                latency_ms=round((time.monotonic() - started) * 1000, 3),
            )

    def _answer(self, envelope: Envelope, started: float) -> msgspec.Raw | None:
        """The reply to send now, or None (expired, or deferred until a future settles)."""
        if envelope.expired() or self._mailbox.abandoned.is_set():
            return None  # the node has answered (Timeout at the deadline, or Unavailable)
        if self._actor is None:
            reason = self._supervision.describe_failure()
            return pack_body(errors.Unavailable(message=f"{self.address} {reason}"))
        key = envelope.idempotency_key
        if key:
            first = self._idempotency.get(key)
            if first is not None:
                return first
            if key in self._in_flight:
                self._in_flight[key].append(envelope)
                return None
        try:
            body = open_body(envelope.body)
        except FrameError as exc:
            return pack_body(errors.BadRequest(message=exc.reason))
        try:
            result = self._actor.handle(body, envelope)
        except Exception as exc:
            self._fail(exc, envelope)
            return pack_body(errors.Internal(message=f"{type(exc).__name__} in {self.address}"))
        if isinstance(result, concurrent.futures.Future):
            generation = self._generation
            if key:
                # The idempotency cache is the runner's: settle keyed requests there.
                self._in_flight[key] = [envelope]
                result.add_done_callback(
                    lambda f: self._hand_back(_Settled(envelope, f, started, generation))
                )
            else:
                # Nothing to remember: reply from the thread that settled it, one hand-off
                # less (send_reply is thread-safe).
                result.add_done_callback(
                    lambda f: self._reply(envelope, self._outcome(f, envelope, generation), started)
                )
            return None
        reply = pack_body(result)
        if key and not isinstance(result, errors.Error):
            self._idempotency.put(key, reply)
        return reply

    def _notify(self, item: _Event) -> None:
        """Hand one event to the actor; a crash is supervised as for a request."""
        if self._actor is None:
            return
        try:
            self._actor.on_event(item.topic, item.event)
        except Exception as exc:
            self._fail(exc, None)

    def _settle(self, settled: _Settled) -> None:
        """Reply to a deferred keyed request and to the repeats of its key; remember it."""
        envelope = settled.envelope
        key = envelope.idempotency_key
        future = settled.future
        reply = self._outcome(future, envelope, settled.generation)
        # An error means the request did not take effect (or may not have: Timeout), so
        # a repeat of the key must run again rather than get the error forever.
        ok = not future.cancelled() and future.exception() is None
        if ok and not isinstance(future.result(), errors.Error):
            self._idempotency.put(key, reply)
        for waiting in self._in_flight.pop(key, [envelope]):
            self._reply(waiting, reply, settled.started)

    def _outcome(
        self, future: concurrent.futures.Future[Message], envelope: Envelope, generation: int
    ) -> msgspec.Raw:
        """The encoded reply a settled future stands for.

        A ``RequestError`` (a typed ask that was refused) passes its error on as the
        reply. Any other exception is ``Internal``, and the actor instance that made the
        future is restarted (by the runner).
        """
        try:
            return pack_body(future.result())
        except RequestError as exc:
            return pack_body(exc.error)
        except concurrent.futures.CancelledError:
            return pack_body(errors.Internal(message=f"cancelled in {self.address}"))
        except Exception as exc:
            self._hand_back(_Crashed(exc, envelope, generation))
            return pack_body(errors.Internal(message=f"{type(exc).__name__} in {self.address}"))

    # -- the lifecycle, in steps each runner sequences with its own waiting ---------------

    def _fail(self, exc: BaseException, envelope: Envelope | None) -> None:
        """Log a crash and mark the actor broken: the runner restarts it before going on."""
        self.ctx.log.error(
            "actor crashed",
            error=f"{type(exc).__name__}: {exc}",
            request_id=envelope.id if envelope else None,
            exc_info=exc,
        )
        if self._error is None:
            self._error = f"{type(exc).__name__}: {exc}"
            self._broken, self._actor = self._actor, None

    def _next_step(self) -> str:
        """What the runner does next: ``retire`` a broken actor, ``build`` one, or ``rest``."""
        if self._error is not None:
            return "retire"
        if self._actor is None and not self._stopping.is_set():
            return "rest" if self._supervision.state is ActorState.FAILED else "build"
        return "rest"

    def _instance(self) -> Actor:
        """A new actor from the factory (its on_start is the runner's to call)."""
        self._lifecycle("actor starting")
        return self._factory(self.ctx)

    def _started(self, actor: Actor) -> None:
        self._actor = actor
        self._generation += 1
        self._supervision.state = ActorState.RUNNING
        self._publish_state()

    def _start_failed(self, exc: BaseException) -> None:
        self._lifecycle("actor stopped")
        self._fail(exc, None)

    def _take_actor(self) -> Actor | None:
        """The instance to stop (live or broken); the runner calls its on_stop."""
        actor = self._actor or self._broken
        self._actor = self._broken = None
        return actor

    def _stopped(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.ctx.log.warning("on_stop raised", error=f"{type(exc).__name__}: {exc}")
        self._lifecycle("actor stopped")

    def _supervise(self) -> float | None:
        """Record the pending crash: the backoff to wait, or None if the actor is now failed."""
        error, self._error = self._error or "", None
        delay = self._supervision.crashed(error)
        self._publish_state()
        if delay is None:
            self.ctx.log.error("actor failed", reason=self._supervision.describe_failure())
            return None
        self.ctx.log.warning(
            "actor restarting", after_s=round(delay, 3), restarts=self._supervision.restarts
        )
        return delay

    def _finished(self) -> None:
        if self._supervision.state is not ActorState.FAILED:
            self._supervision.state = ActorState.STOPPED

    def _lifecycle(self, event: str) -> None:
        """Record when the actor may be live: from before it starts to after it stopped.

        ``at`` is wall-clock time, so the records of nodes on one host can be compared
        (the single-owner tests check that no two such intervals of an address overlap).
        """
        self.ctx.log.info(event, epoch=self.ctx.epoch, at=time.time())

    def _publish_state(self) -> None:
        s = self._supervision
        event = ActorStateChanged(
            address=self.address, state=s.state.value, restarts=s.restarts, reason=s.last_error
        )
        self._port.publish(actor_topic(self.address), event)


class _ThreadRunner(_Core, pykka.ThreadingActor):
    """A mailbox on a pykka thread of its own: the actor's hooks may block."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka needs only put/get/empty; SimpleQueue does them with less locking.
        return queue.SimpleQueue()

    def __init__(self, mailbox: Mailbox, factory: ActorFactory, port: Port) -> None:
        pykka.ThreadingActor.__init__(self)
        _Core.__init__(self, mailbox, factory, port)

    def on_start(self) -> None:
        self._run_lifecycle()

    def on_stop(self) -> None:
        self._stop_actor()
        self._finished()

    def on_receive(self, message: Envelope | _Event | _Settled | _Crashed) -> None:
        self._receive(message)
        self._run_lifecycle()

    def _hand_back(self, item: _Settled | _Crashed) -> None:
        try:
            self.actor_ref.tell(item)
        except pykka.ActorDeadError:
            self.ctx.log.warning("result after stop dropped", request_id=item.envelope.id)

    def _run_lifecycle(self) -> None:
        """Build the actor, or retire a crashed one and rebuild it after its backoff."""
        while (step := self._next_step()) != "rest":
            if step == "retire":
                self._stop_actor()
                delay = self._supervise()
                if delay is None or self._stopping.wait(delay):
                    return
                continue
            try:
                actor = self._instance()
                actor.on_start()
            except Exception as exc:
                self._start_failed(exc)
                continue
            self._started(actor)

    def _stop_actor(self) -> None:
        actor = self._take_actor()
        if actor is None:
            return
        try:
            actor.on_stop()
        except Exception as exc:
            self._stopped(exc)
            return
        self._stopped(None)


_STOP = object()  # queued by _LoopRunner.stop: everything before it is handled first
_BACKOFF_TICK_S = 0.05  # how often a backoff on the loop looks whether stop was asked


class _LoopRunner(_Core):
    """A mailbox on the process's asyncio loop: a queue and one task, no thread.

    For :class:`AsyncActor` only: its handlers run on the loop thread and must not block,
    and its ``on_start``/``on_stop`` are coroutines awaited here.
    """

    def __init__(self, mailbox: Mailbox, factory: ActorFactory, port: Port) -> None:
        super().__init__(mailbox, factory, port)
        self._loop = get_loop_thread()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._done = self._loop.submit(self._main())

    def tell(self, item: Any) -> None:
        """Queue ``item`` (from any thread); dropped with a warning once the loop is gone."""
        try:
            self._loop.call_soon(self._queue.put_nowait, item)
        except RuntimeError:
            self.ctx.log.warning("message after stop dropped")

    def stop(self, timeout: float | None) -> None:
        """Stop after what is queued; with a timeout, wait for it (pykka.Timeout if late).

        Must not be called with a timeout from the loop thread (it would wait on itself).
        """
        self.tell(_STOP)
        if timeout is None:
            return
        try:
            self._done.result(timeout)
        except concurrent.futures.CancelledError:
            pass  # the loop stopped first: it cancelled the task, which ran on_stop
        except concurrent.futures.TimeoutError:
            raise pykka.Timeout(f"{self.address} did not stop in {timeout}s") from None

    def _hand_back(self, item: _Settled | _Crashed) -> None:
        self.tell(item)

    async def _main(self) -> None:
        await self._run_lifecycle()
        try:
            while (message := await self._queue.get()) is not _STOP:
                self._receive(message)
                await self._run_lifecycle()
        finally:
            await self._stop_actor()
            self._finished()

    async def _run_lifecycle(self) -> None:
        """Build the actor, or retire a crashed one and rebuild it after its backoff."""
        while (step := self._next_step()) != "rest":
            if step == "retire":
                await self._stop_actor()
                delay = self._supervise()
                if delay is None or await self._backoff(delay):
                    return
                continue
            try:
                actor = self._instance()
                assert isinstance(actor, AsyncActor), f"{type(actor).__name__} is no AsyncActor"
                await actor.on_start()
            except Exception as exc:
                self._start_failed(exc)
                continue
            self._started(actor)

    async def _backoff(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True if the mailbox is stopping (at once if it is)."""
        until = time.monotonic() + delay
        while not self._stopping.is_set() and (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, _BACKOFF_TICK_S))
        return self._stopping.is_set()

    async def _stop_actor(self) -> None:
        actor = self._take_actor()
        if actor is None:
            return
        assert isinstance(actor, AsyncActor)
        try:
            await actor.on_stop()
        except Exception as exc:
            self._stopped(exc)
            return
        self._stopped(None)
