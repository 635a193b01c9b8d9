"""The mailbox: one hosted actor, fed its messages one at a time by a runner.

An ordinary :class:`~runtime.actor.Actor` gets a pykka thread of its own. An
:class:`~runtime.actor.AsyncActor` gets a task on the process's asyncio loop instead
(:mod:`runtime.loop`): an idle one costs a queue and a suspended coroutine, not a thread,
so a node can host hundreds. Both runners share everything but the waiting: the shared
part is :mod:`runtime.runner`, the waiting :mod:`runtime.thread_runner` and
:mod:`runtime.loop_runner`.

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

import threading
from collections.abc import Callable
from typing import Any

from protocols.base import Message
from protocols.broker import ActorInfo
from protocols.envelope import Envelope
from runtime.actor import ActorContext, ActorFactory, Port, on_loop
from runtime.loop_runner import LoopRunner
from runtime.runner import BusEvent
from runtime.supervisor import ActorState, RestartPolicy, Supervision
from runtime.thread_runner import ThreadRunner

__all__ = ["Mailbox"]


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
            runner = LoopRunner(self, factory, port)
            self._tell: Callable[[Any], None] = runner.tell
            self._stop: Callable[[float | None], None] = runner.stop
        else:
            ref = ThreadRunner.start(self, factory, port)
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
        self._tell(BusEvent(topic, event))
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
