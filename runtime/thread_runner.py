"""A mailbox's runner on a pykka thread of its own, for an ordinary :class:`Actor`.

The actor's hooks (``on_start``, ``handle``, ``on_event``, ``on_idle``, ``on_stop``) all
run on that thread, one at a time, so they may block. A crashed actor is rebuilt there
after its backoff, waited out on :attr:`Mailbox.stopping` so that a stop ends it at once.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

import pykka

from protocols.envelope import Envelope
from runtime.actor import ActorFactory, Port
from runtime.runner import BusEvent, Crashed, Runner, Settled

if TYPE_CHECKING:
    from runtime.mailbox import Mailbox

__all__ = ["ThreadRunner"]


class ThreadRunner(Runner, pykka.ThreadingActor):
    """A mailbox on a pykka thread of its own: the actor's hooks may block."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka needs only put/get/empty; SimpleQueue does them with less locking.
        return queue.SimpleQueue()

    def __init__(self, mailbox: Mailbox, factory: ActorFactory, port: Port) -> None:
        pykka.ThreadingActor.__init__(self)
        Runner.__init__(self, mailbox, factory, port)

    def on_start(self) -> None:
        self._run_lifecycle()

    def on_stop(self) -> None:
        self._stop_actor()
        self._finished()

    def on_receive(self, message: Envelope | BusEvent | Settled | Crashed) -> None:
        self._receive(message)
        self._run_lifecycle()

    def _hand_back(self, item: Settled | Crashed) -> None:
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
