"""A mailbox's runner on the process's asyncio loop, for an :class:`AsyncActor`.

A queue and one task on the loop of :mod:`runtime.loop`, no thread: an idle actor costs
a suspended coroutine. Every hook runs on the loop thread and must not block;
``on_start`` and ``on_stop`` are awaited. :meth:`LoopRunner.tell` works from any thread,
and :meth:`LoopRunner.stop` handles everything queued before it first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

import pykka

from runtime.actor import ActorFactory, AsyncActor, Port
from runtime.loop import get_loop_thread
from runtime.runner import Crashed, Runner, Settled

if TYPE_CHECKING:
    from runtime.mailbox import Mailbox

__all__ = ["LoopRunner"]


_STOP = object()  # queued by LoopRunner.stop: everything before it is handled first
_BACKOFF_TICK_S = 0.05  # how often a backoff on the loop looks whether stop was asked


class LoopRunner(Runner):
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

    def _hand_back(self, item: Settled | Crashed) -> None:
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
