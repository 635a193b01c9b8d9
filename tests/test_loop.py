"""The process-wide asyncio loop thread: results, errors, timeouts that cancel, clean stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import Iterator

import pytest

from runtime.loop import LoopThread, get_loop_thread


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread(name="test-loop")
    yield thread
    thread.stop()


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def forever(started: threading.Event, unwound: threading.Event) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        unwound.set()


def test_run_and_submit_return_results(lt: LoopThread) -> None:
    assert lt.run(add(2, 3), timeout=30) == 5
    assert lt.run(add(2, 2), timeout=math.inf) == 4
    assert lt.submit(add(1, 1)).result(timeout=30) == 2
    assert lt.thread.name == "test-loop" and lt.thread.daemon


def test_coroutines_run_in_the_loop_thread(lt: LoopThread) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert lt.run(where(), timeout=30) == "test-loop"


def test_run_reraises_the_coroutines_exception(lt: LoopThread) -> None:
    async def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        lt.run(fail(), timeout=30)


def test_timeout_cancels_and_waits_for_unwinding(lt: LoopThread) -> None:
    started, unwound = threading.Event(), threading.Event()
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.01s"):
        lt.run(forever(started, unwound), timeout=0.01)
    # run() returns only after the coroutine's cleanup ran: no wait needed here.
    assert started.is_set() and unwound.is_set()
    assert lt.run(add(1, 2), timeout=30) == 3  # the loop keeps serving


def test_the_coroutines_own_timeout_error_passes_through(lt: LoopThread) -> None:
    async def own_timeout() -> None:
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError, match="upstream timed out"):
        lt.run(own_timeout(), timeout=30)


def test_blocked_loop_still_times_out(lt: LoopThread) -> None:
    release = threading.Event()

    async def block() -> None:
        release.wait()  # blocks the whole loop thread, on purpose

    with pytest.raises(TimeoutError, match="loop thread blocked"):
        lt.run(block(), timeout=0, cancel_grace=0)
    release.set()
    assert lt.run(add(2, 2), timeout=30) == 4


def test_run_from_the_loop_thread_is_refused(lt: LoopThread) -> None:
    inner = add(1, 1)

    async def reenter() -> None:
        lt.run(inner, timeout=1)

    with pytest.raises(RuntimeError, match="called from the loop thread itself"):
        lt.run(reenter(), timeout=30)
    assert inner.cr_frame is None  # closed, so never reported as "never awaited"


def test_call_soon_runs_in_the_loop_thread(lt: LoopThread) -> None:
    seen: list[str] = []
    done = threading.Event()

    def record(tag: str) -> None:
        seen.append(f"{tag}@{threading.current_thread().name}")
        done.set()

    lt.call_soon(record, "x")
    assert done.wait(30)
    assert seen == ["x@test-loop"]


def test_many_threads_share_the_loop(lt: LoopThread) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: lt.run(add(i, i), timeout=30), range(200)))
    assert results == [2 * i for i in range(200)]


def test_stop_cancels_pending_tasks_and_is_idempotent() -> None:
    lt = LoopThread()
    started, unwound = threading.Event(), threading.Event()
    future = lt.submit(forever(started, unwound))
    assert started.wait(30)
    lt.stop()
    assert unwound.is_set()
    assert future.cancelled()
    assert not lt.thread.is_alive()
    assert lt.loop.is_closed()
    lt.stop()
    refused = add(1, 1)
    with pytest.raises(RuntimeError, match="is stopped"):
        lt.submit(refused)
    assert refused.cr_frame is None
    with pytest.raises(RuntimeError, match="is stopped"):
        lt.run(add(1, 1), timeout=1)
    with pytest.raises(RuntimeError, match="is stopped"):
        lt.call_soon(print)


def test_run_waiting_when_stop_comes_gets_cancelled() -> None:
    lt = LoopThread()
    started, unwound = threading.Event(), threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lt.run, forever(started, unwound), 3600)
        assert started.wait(30)
        lt.stop()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(timeout=30)


def test_stop_before_start() -> None:
    lt = LoopThread()
    lt.stop()
    assert not lt.thread.is_alive()


def test_process_wide_loop_thread() -> None:
    first = get_loop_thread()
    assert get_loop_thread() is first
    assert first.thread.daemon and first.thread.name == "switchboard-asyncio"
    assert first.run(add(20, 22), timeout=30) == 42
    first.stop()
    second = get_loop_thread()
    assert second is not first and not second.stopped
    assert second.run(add(1, 1), timeout=30) == 2


def test_negative_timeout_is_rejected(lt: LoopThread) -> None:
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        lt.run(add(1, 1), timeout=-1)


def test_submissions_from_one_thread_start_in_order(lt: LoopThread) -> None:
    order: list[int] = []

    async def note(i: int) -> None:
        order.append(i)

    futures = [lt.submit(note(i)) for i in range(50)]
    concurrent.futures.wait(futures, timeout=30)
    assert order == list(range(50))
