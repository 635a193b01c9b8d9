"""The mailbox: a pykka thread that feeds one actor its requests, one at a time.

Guarantees:

* one message at a time, in arrival order (pykka's inbox and thread);
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

import concurrent.futures
import logging
import queue
import threading
import time
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
from runtime.actor import Actor, ActorContext, ActorFactory, Port
from runtime.errors import RequestError
from runtime.idempotency import IdempotencyCache
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
    ) -> None:
        self.address = address
        self.capacity = capacity
        self.ctx = ActorContext(address, port, lambda: self.depth)
        self.supervision = Supervision(policy)
        self.stopping = threading.Event()
        # Set when the address may have moved on: queued requests are skipped, not run.
        self.abandoned = threading.Event()
        self.enqueued = 0  # written by the node's thread only
        self.dequeued = 0  # written by the runner's thread only
        self.events_enqueued = 0  # written by the bus thread only
        self.events_dequeued = 0  # written by the runner's thread only
        self.events_dropped = 0  # written by the bus thread only
        self._ref = _Runner.start(self, factory, port)

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
        self._ref.tell(envelope)

    def deliver(self, topic: str, event: Message) -> bool:
        """Queue a bus event for the actor; False (and counted) if the mailbox is full.

        Called from one thread only (the node's bus listener).
        """
        if self.depth >= self.capacity or self.stopping.is_set():
            self.events_dropped += 1
            return False
        self.events_enqueued += 1
        self._ref.tell(_Event(topic, event))
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the queued requests are handled (block up to ``timeout``).

        With ``timeout`` None, return at once and let the mailbox drain by itself.
        Raises pykka's Timeout if it does not drain in time.
        """
        self.stopping.set()
        self._ref.stop(block=timeout is not None, timeout=timeout)

    def abandon(self) -> None:
        """Stop as soon as the current message is done, skipping queued requests.

        For an address this node may no longer own: the node answers what was queued.
        Returns at once; the actor's ``on_stop`` runs on its own thread.
        """
        self.abandoned.set()
        self.stop()


class _Runner(pykka.ThreadingActor):
    """The mailbox's thread: builds the actor and feeds it one message at a time."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka needs only put/get/empty; SimpleQueue does them with less locking.
        return queue.SimpleQueue()

    def __init__(self, mailbox: Mailbox, factory: ActorFactory, port: Port) -> None:
        super().__init__()
        self.address = mailbox.address
        self.ctx = mailbox.ctx
        self._mailbox = mailbox
        self._supervision = mailbox.supervision
        self._stopping = mailbox.stopping
        self._factory = factory
        self._port = port
        self._actor: Actor | None = None
        self._generation = 0  # bumped for every actor instance built
        self._idempotency = IdempotencyCache()
        # Idempotency keys whose first request is deferred, with every request waiting on it.
        self._in_flight: dict[str, list[Envelope]] = {}

    def on_start(self) -> None:
        self._build()

    def on_stop(self) -> None:
        self._retire()
        if self._supervision.state is not ActorState.FAILED:
            self._supervision.state = ActorState.STOPPED

    def on_receive(self, message: Envelope | _Event | _Settled | _Crashed) -> None:
        if isinstance(message, _Settled):
            self._settle(message)
        elif isinstance(message, _Crashed):
            # A bug in a deferred handler is a crash like any other, unless the instance
            # that failed was already replaced.
            if message.generation == self._generation and self._recover(
                message.error, message.envelope
            ):
                self._build()
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
            if self._recover(exc, None):
                self._build()

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
            if self._recover(exc, envelope):
                self._build()
            return pack_body(errors.Internal(message=f"{type(exc).__name__} in {self.address}"))
        if isinstance(result, concurrent.futures.Future):
            generation = self._generation
            if key:
                # The idempotency cache is this thread's: settle keyed requests here.
                self._in_flight[key] = [envelope]
                result.add_done_callback(
                    lambda f: self._ref_tell(_Settled(envelope, f, started, generation))
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
            if self._recover(exc, None):
                self._build()

    def _ref_tell(self, item: _Settled | _Crashed) -> None:
        """Hand a settled future or a crash back to this mailbox's thread (any thread)."""
        try:
            self.actor_ref.tell(item)
        except pykka.ActorDeadError:
            self.ctx.log.warning("result after stop dropped", request_id=item.envelope.id)

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
        future is restarted (from this mailbox's thread).
        """
        try:
            return pack_body(future.result())
        except RequestError as exc:
            return pack_body(exc.error)
        except concurrent.futures.CancelledError:
            return pack_body(errors.Internal(message=f"cancelled in {self.address}"))
        except Exception as exc:
            self._ref_tell(_Crashed(exc, envelope, generation))
            return pack_body(errors.Internal(message=f"{type(exc).__name__} in {self.address}"))

    def _build(self) -> None:
        """Create the actor and run its on_start, retrying under supervision."""
        while not self._stopping.is_set():
            self._lifecycle("actor starting")
            try:
                actor = self._factory(self.ctx)
                actor.on_start()
            except Exception as exc:
                self._lifecycle("actor stopped")
                if not self._recover(exc, None):
                    return
                continue
            self._actor = actor
            self._generation += 1
            self._supervision.state = ActorState.RUNNING
            self._publish_state()
            return

    def _recover(self, exc: BaseException, envelope: Envelope | None) -> bool:
        """Record a crash and wait out its backoff; False if the actor is now failed."""
        error = f"{type(exc).__name__}: {exc}"
        self.ctx.log.error(
            "actor crashed",
            error=error,
            request_id=envelope.id if envelope else None,
            exc_info=exc,
        )
        self._retire()
        delay = self._supervision.crashed(error)
        self._publish_state()
        if delay is None:
            self.ctx.log.error("actor failed", reason=self._supervision.describe_failure())
            return False
        self.ctx.log.warning(
            "actor restarting", after_s=round(delay, 3), restarts=self._supervision.restarts
        )
        return not self._stopping.wait(delay)

    def _retire(self) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            actor.on_stop()
        except Exception as exc:
            self.ctx.log.warning("on_stop raised", error=f"{type(exc).__name__}: {exc}")
        self._lifecycle("actor stopped")

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
