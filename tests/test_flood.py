"""Flood control: method classes, token buckets and flood waits, on a fake clock and for real.

The arithmetic runs on `FakeTime`, a clock whose time moves only when every task under
test is asleep on it, so results are exact and independent of this machine's load. The
property that one method's wait never holds back another is also checked on the real
event loop, by the order in which things happen, not by how long they take.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from telethon.tl import functions, types
from telethon.tl.functions import contacts, messages

from actors.flood import (
    BOT_LIMITS,
    USER_LIMITS,
    FloodControl,
    FloodWaitError,
    RateLimit,
    method_class,
    request_name,
    tl_name,
)

T = TypeVar("T")

START = 1000.0
RESOLVE = "contacts.ResolveUsernameRequest"
SEARCH = "contacts.SearchRequest"  # Same class as RESOLVE, another method.
SEND = "messages.SendMessageRequest"
HISTORY = "messages.GetHistoryRequest"


class FakeTime:
    """A monotonic clock and a `sleep` on it.

    `run` drives tasks: whenever every one of them is asleep on this clock, time jumps to
    the earliest wake-up and that sleeper is woken, so time passes exactly as slept.
    """

    def __init__(self) -> None:
        self.now = START
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), wake))
        await wake

    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones do not count)."""
        return sum(not wake.done() for _, _, wake in self._timers)

    async def settle(self, tasks: list[asyncio.Future[T]]) -> None:
        """Let the event loop run until every task in ``tasks`` is done or asleep here."""
        while sum(not task.done() for task in tasks) != self.sleepers():
            await asyncio.sleep(0)

    async def run(self, *aws: Awaitable[T]) -> list[T]:
        """Run ``aws`` to completion on this clock; return their results in order."""
        tasks = [asyncio.ensure_future(aw) for aw in aws]
        await self.settle(tasks)
        while not all(task.done() for task in tasks):
            when, _, wake = heapq.heappop(self._timers)
            if not wake.done():
                self.now = max(self.now, when)
                wake.set_result(None)
            await self.settle(tasks)
        return [task.result() for task in tasks]


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def control(ft: FakeTime, limits: dict[str, RateLimit] | None = None) -> FloodControl:
    return FloodControl(USER_LIMITS if limits is None else limits, clock=ft.clock, sleep=ft.sleep)


def in_(seconds: float) -> float:
    """An envelope deadline ``seconds`` from now (wall clock, as envelopes carry it)."""
    return time.time() + seconds


# -- method classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("contacts.ResolveUsernameRequest", "resolve"),
        ("ResolveUsernameRequest", "resolve"),
        ("contacts.resolveUsername", "resolve"),
        ("messages.CheckChatInviteRequest", "resolve"),
        ("contacts.SearchRequest", "resolve"),
        ("channels.JoinChannelRequest", "join"),
        ("messages.ImportChatInviteRequest", "join"),
        ("channels.LeaveChannelRequest", "join"),
        ("messages.SendMessageRequest", "send"),
        ("messages.SendMediaRequest", "send"),
        ("messages.EditMessageRequest", "send"),
        ("ForwardMessagesRequest", "send"),
        ("messages.GetHistoryRequest", "history"),
        ("channels.GetMessagesRequest", "history"),
        ("messages.GetMessagesRequest", "history"),
        ("GetMessagesRequest", "history"),
        ("updates.GetChannelDifferenceRequest", "history"),
        ("messages.GetDialogsRequest", "dialogs"),
        ("users.GetFullUserRequest", "other"),
        ("messages.SearchRequest", "other"),
        ("GetMeRequest", "other"),
        ("", "other"),
    ],
)
def test_method_class(name: str, cls: str) -> None:
    assert method_class(name) == cls


def test_spellings_of_a_method_have_one_tl_name() -> None:
    assert tl_name("contacts.ResolveUsernameRequest") == "contacts.resolveUsername"
    assert tl_name("contacts.resolveUsername") == "contacts.resolveUsername"
    assert tl_name("ResolveUsernameRequest") == "resolveUsername"
    # A TL name that ends in "Request" keeps it; its Telethon class adds another.
    assert tl_name("messages.HideChatJoinRequestRequest") == "messages.hideChatJoinRequest"
    assert tl_name("messages.hideChatJoinRequest") == "messages.hideChatJoinRequest"


def test_request_name_of_telethon_requests() -> None:
    resolve = contacts.ResolveUsernameRequest(username="somebody")
    assert request_name(resolve) == "contacts.resolveUsername"
    assert method_class(request_name(resolve)) == "resolve"
    # messages.search and contacts.search share a class name; only the namespace tells them
    # apart, and only contacts.search is rationed.
    search = messages.SearchRequest(
        peer=types.InputPeerEmpty(),
        q="x",
        filter=types.InputMessagesFilterEmpty(),
        min_date=None,
        max_date=None,
        offset_id=0,
        add_offset=0,
        limit=1,
        max_id=0,
        min_id=0,
        hash=0,
    )
    assert request_name(search) == "messages.search"
    assert method_class(request_name(search)) == "other"
    assert method_class(request_name(contacts.SearchRequest(q="x", limit=1))) == "resolve"
    assert request_name(functions.PingRequest(ping_id=1)) == "ping"


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_rate_limit_refuses_impossible_values(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimit(rate_per_s=rate, burst=burst)


def test_unknown_method_class_in_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="resovle"):
        FloodControl({"resovle": RateLimit(rate_per_s=1.0, burst=1)})


def test_default_limits() -> None:
    for limits in (USER_LIMITS, BOT_LIMITS):
        FloodControl(limits)  # Every class they name is a known one.
        assert "other" not in limits
    assert USER_LIMITS["resolve"].rate_per_s < BOT_LIMITS["resolve"].rate_per_s
    assert BOT_LIMITS["send"] == RateLimit(rate_per_s=30.0, burst=30)
    with pytest.raises(TypeError):
        USER_LIMITS["send"] = RateLimit(rate_per_s=100.0, burst=100)  # type: ignore[index]


async def test_burst_then_refill_at_the_configured_rate(ft: FakeTime) -> None:
    fc = control(ft, {"send": RateLimit(rate_per_s=2.0, burst=3)})
    await ft.run(*(fc.acquire(SEND, None) for _ in range(3)))
    assert ft.now == START  # The burst went at once.
    assert fc.retry_after(SEND) == pytest.approx(0.5)
    ft.now += 0.25
    assert fc.retry_after(SEND) == pytest.approx(0.25)
    ft.now += 0.25
    assert fc.retry_after(SEND) == 0
    await ft.run(fc.acquire(SEND, None))
    assert ft.now == START + 0.5
    # An idle bucket fills up to its burst and no further.
    ft.now += 3600
    await ft.run(*(fc.acquire(SEND, None) for _ in range(3)))
    assert ft.now == START + 3600.5
    assert fc.retry_after(SEND) == pytest.approx(0.5)


async def test_concurrent_waiters_take_tokens_in_order_without_overshoot(ft: FakeTime) -> None:
    rate, burst = 2.0, 3
    fc = control(ft, {"send": RateLimit(rate_per_s=rate, burst=burst)})
    ran: list[tuple[int, float]] = []

    async def send(i: int) -> None:
        await fc.acquire(SEND, None)
        ran.append((i, ft.now - START))

    await ft.run(*(send(i) for i in range(10)))
    assert [i for i, _ in ran] == list(range(10))
    expected = [0.0] * burst + [(k + 1) / rate for k in range(10 - burst)]
    assert [t for _, t in ran] == pytest.approx(expected)
    times = [t for _, t in ran]
    for a in range(len(times)):
        for b in range(a, len(times)):
            assert b - a + 1 <= burst + rate * (times[b] - times[a]) + 1e-9


def test_acquire_with_a_token_free_never_suspends() -> None:
    # A request that need not wait costs no trip through the event loop.
    fc = FloodControl(USER_LIMITS)
    for method in (SEND, "users.GetFullUserRequest"):
        with pytest.raises(StopIteration):
            fc.acquire(method, None).send(None)


async def test_expired_deadline_is_no_reason_to_refuse_a_request_that_need_not_wait(
    ft: FakeTime,
) -> None:
    fc = control(ft)
    await ft.run(fc.acquire(SEND, in_(-1)))
    assert fc.retry_after(SEND) == 0


async def test_class_mates_share_a_bucket_other_classes_do_not(ft: FakeTime) -> None:
    fc = control(ft, {"resolve": RateLimit(rate_per_s=0.1, burst=1)})
    await ft.run(fc.acquire(RESOLVE, None))
    assert fc.retry_after(SEARCH) == pytest.approx(10)
    assert fc.retry_after(SEND) == 0


async def test_unknown_method_is_other_and_unlimited(ft: FakeTime) -> None:
    fc = control(ft, dict(USER_LIMITS))
    await ft.run(*(fc.acquire("users.GetFullUserRequest", in_(0.001)) for _ in range(1000)))
    assert ft.now == START
    assert fc.retry_after("users.GetFullUserRequest") == 0


# -- flood waits ----------------------------------------------------------------------------


async def test_flood_wait_blocks_that_method_only(ft: FakeTime) -> None:
    fc = control(ft)
    fc.record_flood_wait(RESOLVE, 30)
    assert fc.retry_after(RESOLVE) == pytest.approx(30)
    assert fc.retry_after("contacts.resolveUsername") == pytest.approx(30)
    assert fc.retry_after(SEARCH) == 0  # Same class, another method.
    assert fc.snapshot() == {"contacts.resolveUsername": pytest.approx(30)}
    await ft.run(fc.acquire(SEARCH, None), fc.acquire(HISTORY, None))
    assert ft.now == START
    ft.now += 12
    assert fc.snapshot() == {"contacts.resolveUsername": pytest.approx(18)}
    ft.now += 18
    assert fc.snapshot() == {}
    assert fc.retry_after(RESOLVE) == 0


async def test_a_shorter_flood_wait_does_not_cut_a_longer_one(ft: FakeTime) -> None:
    fc = control(ft)
    fc.record_flood_wait(RESOLVE, 30)
    fc.record_flood_wait(RESOLVE, 5)
    assert fc.retry_after(RESOLVE) == pytest.approx(30)
    fc.record_flood_wait(RESOLVE, 60)
    assert fc.retry_after(RESOLVE) == pytest.approx(60)


async def test_flood_wait_is_waited_out_when_the_deadline_allows(ft: FakeTime) -> None:
    fc = control(ft)
    fc.record_flood_wait(RESOLVE, 30)
    await ft.run(fc.acquire(RESOLVE, in_(60)))
    assert ft.now == START + 30
    await ft.run(fc.acquire(RESOLVE, None))
    assert ft.now == START + 30
    assert fc.snapshot() == {}


async def test_deadline_shorter_than_flood_wait_raises_at_once(ft: FakeTime) -> None:
    fc = control(ft, {"resolve": RateLimit(rate_per_s=0.1, burst=1)})
    fc.record_flood_wait(RESOLVE, 30)
    ft.now += 10
    with pytest.raises(FloodWaitError) as caught:
        await ft.run(fc.acquire(RESOLVE, in_(5)))
    assert caught.value.method == "contacts.resolveUsername"
    assert caught.value.retry_after == pytest.approx(20)
    assert ft.now == START + 10  # No time passed: nothing waited.
    # The failed request took no token: its class-mate gets the only one at once.
    await ft.run(fc.acquire(SEARCH, in_(0.001)))
    assert ft.now == START + 10


async def test_deadline_shorter_than_bucket_wait_raises_at_once_without_a_token(
    ft: FakeTime,
) -> None:
    fc = control(ft, {"resolve": RateLimit(rate_per_s=0.1, burst=1)})
    await ft.run(fc.acquire(RESOLVE, None))
    for _ in range(3):
        with pytest.raises(FloodWaitError) as caught:
            await ft.run(fc.acquire(SEARCH, in_(5)))
        assert caught.value.retry_after == pytest.approx(10)
    assert ft.now == START
    assert fc.retry_after(SEARCH) == pytest.approx(10)  # Not 40: no token was taken.
    await ft.run(fc.acquire(SEARCH, in_(15)))
    assert ft.now == START + 10


async def test_flood_wait_recorded_while_queued_returns_the_token(ft: FakeTime) -> None:
    fc = control(ft, {"resolve": RateLimit(rate_per_s=1.0, burst=1)})
    await ft.run(fc.acquire(RESOLVE, None))
    queued = asyncio.ensure_future(fc.acquire(RESOLVE, None))
    await ft.settle([queued])  # Asleep until its token is due, 1 s from now.
    fc.record_flood_wait(RESOLVE, 10)
    await ft.run(queued)
    assert ft.now == START + 10
    # It woke at START + 1, gave its token back, waited out the flood, then took a token.
    ft.now += 1
    assert fc.retry_after(SEARCH) == 0


async def test_flood_wait_growing_past_the_deadline_raises_and_returns_the_token(
    ft: FakeTime,
) -> None:
    fc = control(ft, {"resolve": RateLimit(rate_per_s=1.0, burst=1)})
    await ft.run(fc.acquire(RESOLVE, None))
    queued = asyncio.ensure_future(fc.acquire(RESOLVE, in_(5)))
    await ft.settle([queued])
    fc.record_flood_wait(RESOLVE, 10)
    with pytest.raises(FloodWaitError) as caught:
        await ft.run(queued)
    assert ft.now == START + 1
    assert caught.value.retry_after == pytest.approx(9)
    assert fc.retry_after(SEARCH) == 0


async def test_cancelled_waiter_gives_its_token_back(ft: FakeTime) -> None:
    fc = control(ft, {"send": RateLimit(rate_per_s=1.0, burst=1)})
    await ft.run(fc.acquire(SEND, None))
    queued = asyncio.ensure_future(fc.acquire(SEND, None))
    await ft.settle([queued])
    assert fc.retry_after(SEND) == pytest.approx(2)  # One token is reserved ahead.
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert fc.retry_after(SEND) == pytest.approx(1)


async def test_token_given_back_late_does_not_overfill_the_bucket(ft: FakeTime) -> None:
    fc = control(ft, {"send": RateLimit(rate_per_s=1.0, burst=1)})
    await ft.run(fc.acquire(SEND, None))
    queued = asyncio.ensure_future(fc.acquire(SEND, None))
    await ft.settle([queued])
    ft.now += 5  # The loop was busy: the bucket is full again by the time it is cancelled.
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await ft.run(fc.acquire(SEND, None))
    assert fc.retry_after(SEND) == pytest.approx(1)  # A burst of 1, not 2.


def test_flood_wait_error_says_what_and_how_long() -> None:
    error = FloodWaitError("contacts.resolveUsername", 12.5)
    assert (error.method, error.retry_after) == ("contacts.resolveUsername", 12.5)
    assert str(error) == "contacts.resolveUsername may run again in 12.500 s"


# -- real event loop ------------------------------------------------------------------------


async def test_one_methods_wait_does_not_hold_back_others_on_the_real_loop() -> None:
    fc = FloodControl(USER_LIMITS)
    fc.record_flood_wait(RESOLVE, 1.0)
    events: list[str] = []

    async def request(method: str, deadline: float | None, label: str) -> None:
        await fc.acquire(method, deadline)
        events.append(label)

    waiting = asyncio.create_task(request(RESOLVE, None, "resolve"))
    await asyncio.sleep(0)  # It has started waiting out its flood wait.
    assert not waiting.done()
    await request(HISTORY, None, "history")
    await request(SEARCH, None, "search")  # Same class as the waiting method.
    with pytest.raises(FloodWaitError) as caught:
        await request(RESOLVE, in_(0.01), "resolve, deadline too short")
    assert 0 < caught.value.retry_after <= 1.0
    assert events == ["history", "search"]
    assert not waiting.done()
    await waiting
    assert events == ["history", "search", "resolve"]
    assert fc.snapshot() == {}
