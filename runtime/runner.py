"""What a mailbox's two runners share: one message taken, and its one reply.

:class:`Runner` keeps the reply guarantees of :mod:`runtime.mailbox` without waiting on
anything. How each reply is made:

* a request that expired, or reached an abandoned mailbox, is not run (the node has
  answered it); one for a failed actor gets ``Unavailable``, an unreadable body
  ``BadRequest``, a handler that raised ``Internal``;
* idempotency: a key's first successful reply is kept and sent again to its repeats; a
  repeat that arrives while the first is deferred waits for that same reply;
* a deferred reply (a ``concurrent.futures.Future``) with a key is settled on the runner,
  which owns the idempotency cache (:meth:`Runner._hand_back`); one without a key is sent
  from the thread that settled it. A future that raises crashes the instance that made
  it (ignored if it was replaced), unless it raised a ``RequestError``;
* a crash is logged and marks the actor broken; the state after each start and each
  crash (running, restarting, failed) is published on the bus
  (:func:`protocols.events.actor_topic`).

Everything runs on the runner's thread (its pykka thread, or the loop thread), except
the replies to deferred requests without a key and the calls to :meth:`Runner._hand_back`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from protocols import errors
from protocols.base import Message
from protocols.codec import FrameError, body_type, open_body, pack_body
from protocols.envelope import Envelope
from protocols.events import ActorStateChanged, actor_topic
from runtime.actor import Actor, ActorFactory, Port
from runtime.errors import RequestError
from runtime.idempotency import IdempotencyCache
from runtime.supervisor import ActorState

if TYPE_CHECKING:
    from runtime.mailbox import Mailbox

__all__ = ["BusEvent", "Crashed", "Runner", "Settled"]


@dataclass(frozen=True)
class BusEvent:
    """A bus event for the actor: ``event`` published under ``topic``."""

    topic: str
    event: Message


@dataclass(frozen=True)
class Crashed:
    """A deferred request of actor instance number ``generation`` failed with ``error``."""

    error: BaseException
    envelope: Envelope
    generation: int


@dataclass(frozen=True)
class Settled:
    """A deferred reply is ready: ``future`` settled for the request ``envelope``."""

    envelope: Envelope
    future: concurrent.futures.Future[Message]
    started: float  # when the request was taken from the mailbox (time.monotonic)
    generation: int  # which actor instance made the future


class Runner:
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

    def _hand_back(self, item: Settled | Crashed) -> None:
        """Queue a settled future or a crash for this runner (from any thread)."""
        raise NotImplementedError

    # -- one message ---------------------------------------------------------------------

    def _receive(self, message: Envelope | BusEvent | Settled | Crashed) -> None:
        if isinstance(message, Settled):
            self._settle(message)
        elif isinstance(message, Crashed):
            # A bug in a deferred handler is a crash like any other, unless the instance
            # that failed was already replaced.
            if message.generation == self._generation:
                self._fail(message.error, message.envelope)
        elif isinstance(message, BusEvent):
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
                    lambda f: self._hand_back(Settled(envelope, f, started, generation))
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

    def _notify(self, item: BusEvent) -> None:
        """Hand one event to the actor; a crash is supervised as for a request."""
        if self._actor is None:
            return
        try:
            self._actor.on_event(item.topic, item.event)
        except Exception as exc:
            self._fail(exc, None)

    def _settle(self, settled: Settled) -> None:
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
            self._hand_back(Crashed(exc, envelope, generation))
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
