"""One asyncio event loop thread per process, for actors that need to run coroutines.

pykka actors run in their own threads and handle one message at a time; coroutine
handlers and whole :class:`~runtime.actor.AsyncActor` mailboxes (the session actor, which
drives Telethon) run here. `get_loop_thread` gives every actor in the process the same
loop thread; a threaded actor calls `LoopThread.run` to run a coroutine there and wait for
its result with a timeout. On timeout the coroutine is cancelled and `run` returns only after
it has finished unwinding, so the actor's next message never overlaps with the last one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["DEFAULT_CANCEL_GRACE_S", "LoopThread", "get_loop_thread"]

T = TypeVar("T")

# How long run() waits, past its timeout, for a cancelled coroutine to finish unwinding
# before giving up on it (only exceeded if the loop thread itself is blocked).
DEFAULT_CANCEL_GRACE_S = 5.0
_THREAD_NAME = "switchboard-asyncio"


class LoopThread:
    """An asyncio event loop running forever in a daemon thread.

    Started on first use (or by `start`), stopped by `stop`. All methods are thread-safe.
    """

    def __init__(self, name: str = _THREAD_NAME) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = False
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop; use it only through thread-safe calls from other threads."""
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        """The thread the loop runs in."""
        return self._thread

    @property
    def stopped(self) -> bool:
        """True once `stop` has been called."""
        return self._stopped

    def in_loop_thread(self) -> bool:
        """True if the caller is running in the loop thread."""
        return threading.get_ident() == self._thread.ident

    def start(self) -> None:
        """Start the thread if it is not running yet; raises RuntimeError after `stop`."""
        with self._lock:
            self._start_locked()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a future for its result.

        Cancelling the future cancels the coroutine. If the loop is stopped before the
        coroutine finishes, the future is cancelled. Raises RuntimeError after `stop` (and
        closes ``coro``, so it is not reported as never awaited).
        """
        with self._lock:
            # Under the lock so that stop() cannot slip in between the check and the
            # scheduling: everything scheduled before stop() gets an answer.
            try:
                self._start_locked()
            except RuntimeError:
                coro.close()
                raise
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float,
        *,
        cancel_grace: float = DEFAULT_CANCEL_GRACE_S,
    ) -> T:
        """Run ``coro`` on the loop, wait for it and return its result.

        Re-raises whatever the coroutine raises. If it has not finished within ``timeout``
        seconds it is cancelled and TimeoutError is raised once it has finished unwinding;
        if it has still not finished ``cancel_grace`` seconds later (the loop thread is
        blocked, or the coroutine ignores cancellation) TimeoutError is raised anyway, saying
        so. Raises RuntimeError when called from the loop thread itself, where waiting
        would deadlock, after `stop`, and concurrent.futures.CancelledError if the loop is
        stopped while the coroutine runs. Raises ValueError for a negative timeout.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "LoopThread.run() was called from the loop thread itself; it would wait "
                "forever for a coroutine that can only run after it returns. "
                "Await the coroutine instead."
            )
        if timeout < 0:
            coro.close()
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        limit = None if math.isinf(timeout) else timeout
        try:
            future = self.submit(_within(coro, limit))
        except RuntimeError:
            coro.close()  # the wrapper was closed unstarted, so nothing else closes it
            raise
        wait_s = None if limit is None else limit + cancel_grace
        done, _ = concurrent.futures.wait([future], wait_s)
        if not done:
            future.cancel()
            raise TimeoutError(
                f"coroutine did not finish within {timeout}s and was still running "
                f"{cancel_grace}s after being cancelled (is the loop thread blocked?)"
            )
        return future.result()

    def call_soon(self, fn: Callable[..., object], *args: Any) -> asyncio.Handle:
        """Call ``fn(*args)`` in the loop thread as soon as possible; returns its handle.

        Raises RuntimeError after `stop`.
        """
        with self._lock:
            self._start_locked()
            return self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        """Cancel every pending task, wait for them to finish, stop the loop and join.

        Does nothing if already stopped. Raises RuntimeError when called from the loop
        thread itself (it cannot join itself).
        """
        if self.in_loop_thread():
            raise RuntimeError("LoopThread.stop() cannot be called from the loop thread itself")
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if not self._started:
                self._loop.close()
                return
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _start_locked(self) -> None:
        if self._stopped:
            raise RuntimeError(f"loop thread {self._thread.name!r} is stopped")
        if not self._started:
            self._thread.start()
            self._started = True

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Cancel what is left, so that every submit() and run() still waiting gets an
            # answer, and let the tasks run their cleanup.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._started else "new"
        return f"LoopThread({self._thread.name!r}, {state})"


async def _within(coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Await ``coro`` with a timeout (None: none) that cancels it and waits for it to unwind.

    Raises TimeoutError naming the timeout when it expires; a TimeoutError the coroutine
    raises by itself passes through unchanged.
    """
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await coro
    except TimeoutError:
        if scope.expired():
            raise TimeoutError(f"coroutine did not finish within {timeout}s") from None
        raise


_current: LoopThread | None = None
_current_lock = threading.Lock()


def get_loop_thread() -> LoopThread:
    """The process-wide loop thread, started on first use (and anew after it was stopped)."""
    global _current
    with _current_lock:
        if _current is None or _current.stopped:
            _current = LoopThread()
            _current.start()
        return _current


def _forget_in_child() -> None:
    """After fork the child has no loop thread: the next get_loop_thread() starts one."""
    global _current, _current_lock
    _current = None
    _current_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
