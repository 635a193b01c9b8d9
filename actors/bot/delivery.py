"""Delivery of new channel posts to a bot's subscribers: each (subscriber, post) once.

The store is the record, the bus only a wake-up. :class:`Delivery` reads the store's
post sequence with ``PostsSince(cursor)`` (cursor ``bot:<account>``), plans one job per
(subscriber, post) whose keywords match, and sends each through the bot's session actor
with the idempotency key ``<subscriber>:<channel_id>:<message_id>``; after the send it
records the delivery (``sent`` with the copy's message id) in the store. The cursor moves
past a post only when every job of it and of the posts before it is done, so after a
``kill -9`` the posts after the saved cursor are planned again: those already recorded
are skipped, and a send that went out but was not recorded yet is repeated with the same
key, which the session actor (and Telegram, by the key's ``random_id``) answers with the
first result instead of sending twice.

Sends are paced by :class:`~actors.bot.pace.Pace` (overall, per private chat, per group)
and queued per chat, in post order; a FloodWait for one chat delays that chat's queue
only. Nothing is dropped for being over a limit. An edit of a delivered post edits the
copies; a deleted one is marked, kept, or its copies are deleted from the subscribers'
chats (``delivery.on_deleted``). A deleted copy is recorded ``deleted`` in the store, so
it is deleted once: a restart or a repeated deletion plans nothing for it, and a delete
repeated after a crash before its record carries the first one's idempotency key; a copy
already gone (the subscriber deleted it) counts as deleted, not as an error.

Runs on the process's asyncio loop; every method is called there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from actors.bot import texts
from actors.bot.pace import Pace
from actors.bot.tasks import Tasks
from actors.store_lists import all_subscriptions
from config import DeliverySettings
from protocols import errors
from protocols import session as s
from protocols import store as st
from protocols.base import R, Request
from runtime.actor import ActorContext
from runtime.errors import RequestError

__all__ = ["Delivery", "DeliveryCounts"]

log = structlog.get_logger("bot.delivery")

MAX_IN_FLIGHT = 32
RETRY_S = 1.0  # after a Timeout, Busy or an unreachable session: the chat waits this long
SEND_TIMEOUT_S = 30.0
STORE_TIMEOUT_S = 10.0
# Errors after which the same send may succeed later; anything else gives the job up.
_TRANSIENT = (errors.Timeout, errors.Busy, errors.Unavailable, errors.NoSuchAddress)


@dataclass
class DeliveryCounts:
    """What delivery did since the actor started, and what waits."""

    sent: int = 0
    edited: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    flood_waits: int = 0
    queued: int = 0
    cursor: int = 0


@dataclass
class _Job:
    chat_id: int
    subscriber: str
    post: st.Post
    channel: st.Channel
    copy_id: int = 0  # the delivered copy, when this job edits or deletes it
    delete: bool = False  # delete the copy rather than edit it


@dataclass
class _Plan:
    """The jobs of the posts read but not finished, by post seq (oldest first)."""

    left: OrderedDict[int, int] = field(default_factory=OrderedDict)

    def add(self, seq: int, jobs: int) -> None:
        self.left[seq] = jobs

    def finish(self, seq: int) -> None:
        self.left[seq] -= 1

    def done_upto(self, cursor: int) -> int:
        """Drop the finished posts at the head; the seq the cursor may move to."""
        while self.left:
            seq, jobs = next(iter(self.left.items()))
            if jobs > 0:
                break
            self.left.popitem(last=False)
            cursor = seq
        return cursor


class Delivery:
    """The delivery loop of one bot account (see the module docstring)."""

    def __init__(
        self,
        ctx: ActorContext,
        account: str,
        settings: DeliverySettings,
        session: str,
        store: str = "store:main",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.settings = settings
        self.session = session
        self.store = store
        self.pace = Pace(settings, clock)
        self.counts = DeliveryCounts()
        self._clock = clock
        self._prefix = f"bot:{account}:"
        self._cursor_name = f"bot:{account}"
        self._queues: dict[int, deque[_Job]] = {}
        self._busy: set[int] = set()
        self._plan = _Plan()
        self._read_seq = 0
        self._saved = 0
        self._wake = asyncio.Event()  # the store may have new posts
        self._moved = asyncio.Event()  # queued jobs went down
        self._sendable = asyncio.Event()  # a chat may have become sendable
        self._tasks = Tasks("delivery task", account=account)
        self._channels: dict[int, st.Channel] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start reading and sending (on the loop)."""
        self._tasks.spawn(self._read_loop())
        self._tasks.spawn(self._send_loop())

    def stop(self) -> None:
        self._tasks.cancel()

    def wake(self) -> None:
        """Something was stored: read the sequence now rather than at the next poll."""
        self._wake.set()

    # -- reading the store --------------------------------------------------------------

    async def _read_loop(self) -> None:
        cursor = await self._saved_cursor()
        self._read_seq = self._saved = self.counts.cursor = cursor.seq
        while True:
            try:
                more = await self._read_page()
            except RequestError as exc:
                log.warning("reading posts failed", account=self.account, error=repr(exc.error))
                more = False
            if more:
                continue
            self._wake.clear()
            await _wait(self._wake, self.settings.poll_interval_s)

    async def _saved_cursor(self) -> st.Cursor:
        """The cursor saved in the store; asked again each poll interval until the store
        answers (it may be restarting when this actor starts)."""
        while True:
            try:
                return await self._store(st.GetCursor(name=self._cursor_name))
            except RequestError as exc:
                log.warning(
                    "reading the cursor failed", account=self.account, error=repr(exc.error)
                )
                await asyncio.sleep(self.settings.poll_interval_s)

    async def _read_page(self) -> bool:
        """Plan the jobs of the next page of posts; True if there may be more at once."""
        if self.counts.queued >= 2 * self.settings.page:
            self._moved.clear()  # the senders catch up first: memory stays bounded
            await self._moved.wait()
            return True
        page = await self._store(st.PostsSince(after_seq=self._read_seq, limit=self.settings.page))
        if not page.posts:
            return False
        subscribers = await self._subscribers()
        for post in page.posts:
            await self._plan_post(post, subscribers.get(post.channel_id, []))
            self._read_seq = post.seq
        await self._advance()
        log.info(
            "delivery read",
            account=self.account,
            upto=self._read_seq,
            cursor=self.counts.cursor,
            queued=self.counts.queued,
            sent=self.counts.sent,
        )
        return len(page.posts) == self.settings.page

    async def _subscribers(self) -> dict[int, list[st.Subscription]]:
        mine: dict[int, list[st.Subscription]] = {}
        for sub in await all_subscriptions(self._store):
            if sub.subscriber.startswith(self._prefix):
                mine.setdefault(sub.channel_id, []).append(sub)
        return mine

    async def _plan_post(self, post: st.Post, subs: list[st.Subscription]) -> None:
        """Queue this post's jobs: a new copy, an edit of a copy, or nothing, per subscriber."""
        jobs: list[_Job] = []
        if subs:
            done = await self._store(
                st.GetDeliveries(
                    channel_id=post.channel_id, message_id=post.message_id, limit=st.MAX_PAGE
                )
            )
            copies = {d.subscriber: d for d in done.deliveries if d.status in st.FINAL_DELIVERY}
            channel = await self._channel(post.channel_id)
            for sub in subs:
                job = self._job(post, sub, copies.get(sub.subscriber), channel)
                if job is not None:
                    jobs.append(job)
        self._plan.add(post.seq, len(jobs))
        for job in jobs:
            self._queues.setdefault(job.chat_id, deque()).append(job)
        self.counts.queued += len(jobs)
        if jobs:
            self._wake_senders()

    def _job(
        self,
        post: st.Post,
        sub: st.Subscription,
        copy: st.Delivery | None,
        channel: st.Channel,
    ) -> _Job | None:
        chat_id = int(sub.subscriber.removeprefix(self._prefix))
        if copy is not None:
            changed = copy.seq < post.seq and (post.edit_date or post.deleted)
            if copy.status == "deleted" or not (changed and copy.sent_message_id):
                return None
            wanted = self.settings.on_deleted != "keep" if post.deleted else self.settings.edits
            if not wanted:
                return None
            delete = post.deleted and self.settings.on_deleted == "delete"
            return _Job(chat_id, sub.subscriber, post, channel, copy.sent_message_id, delete)
        if post.deleted or not texts.matches(post.text, sub.keywords):
            return None
        return _Job(chat_id, sub.subscriber, post, channel)

    async def _channel(self, channel_id: int) -> st.Channel:
        known = self._channels.get(channel_id)
        if known is None:
            try:
                known = await self._store(st.GetChannel(channel_id=channel_id))
            except RequestError:
                known = st.Channel(id=channel_id)
            self._channels[channel_id] = known
        return known

    async def _advance(self) -> None:
        """Save the cursor past every post whose jobs are all done."""
        cursor = self._plan.done_upto(self.counts.cursor)
        if not self._plan.left:
            cursor = max(cursor, self._read_seq)
        self.counts.cursor = cursor
        if cursor > self._saved:
            self._saved = cursor
            await self._store(st.SaveCursor(name=self._cursor_name, seq=cursor))

    # -- sending --------------------------------------------------------------------------

    def _wake_senders(self) -> None:
        self._moved.set()
        self._sendable.set()

    def _next_chat(self) -> tuple[int | None, float]:
        """The chat to send to next (earliest allowed), and when it may go."""
        best, best_at = None, float("inf")
        for chat_id, queue in self._queues.items():
            if queue and chat_id not in self._busy:
                at = self.pace.chat_ready_at(chat_id)
                if at < best_at:
                    best, best_at = chat_id, at
        return best, best_at

    async def _send_loop(self) -> None:
        while True:
            chat_id, _ = self._next_chat()
            if chat_id is None or len(self._busy) >= MAX_IN_FLIGHT:
                self._sendable.clear()
                await self._sendable.wait()
                continue
            delay = self.pace.ready_at(chat_id) - self._clock()
            if delay > 0:
                self._sendable.clear()
                await _wait(self._sendable, delay)
                continue  # a chat may have become ready sooner meanwhile
            job = self._queues[chat_id].popleft()
            self._busy.add(chat_id)
            self.pace.took(chat_id)
            self._tasks.spawn(self._run(job))

    async def _run(self, job: _Job) -> None:
        """One send or edit; a job that must be retried goes back to the head of its chat."""
        try:
            finished = await self._attempt(job)
        except RequestError as exc:
            finished = self._failed(job, exc.error)
        finally:
            self._busy.discard(job.chat_id)
        if finished:
            self.counts.queued -= 1
            self._plan.finish(job.post.seq)
            try:
                await self._advance()
            except RequestError as exc:
                log.warning("saving the cursor failed", error=repr(exc.error))
        else:
            self._queues[job.chat_id].appendleft(job)
        self._wake_senders()

    async def _attempt(self, job: _Job) -> bool:
        post = job.post
        key = f"{job.subscriber}:{post.channel_id}:{post.message_id}"
        if job.delete:
            await self.ctx.call(
                self.session,
                s.DeleteMessages(peer=job.chat_id, message_ids=[job.copy_id], revoke=True),
                timeout=SEND_TIMEOUT_S,
                # A repeat after a crash before the record is answered by the session
                # without a second call (and would delete nothing: the id is gone).
                idempotency_key=f"delete:{key}",
            )
            await self._record(job, "deleted", job.copy_id)
            self.counts.deleted += 1
            return True
        text = texts.copy_text(job.channel, post, deleted_mark=post.deleted)
        if job.copy_id:
            await self.ctx.call(
                self.session,
                s.EditMessage(peer=job.chat_id, message_id=job.copy_id, text=text),
                timeout=SEND_TIMEOUT_S,
            )
            self.counts.edited += 1
            return True
        sent = await self.ctx.call(
            self.session,
            s.SendMessage(peer=job.chat_id, text=text),
            timeout=SEND_TIMEOUT_S,
            idempotency_key=key,
        )
        await self._record(job, "sent", sent.message.id)
        self.counts.sent += 1
        return True

    def _failed(self, job: _Job, error: errors.Error) -> bool:
        """Decide on a failed job: True if it is done with (given up), False to retry."""
        if isinstance(error, errors.FloodWait):
            self.counts.flood_waits += 1
            self.pace.flood_waited(job.chat_id, error.retry_after)
            log.info("chat flood-waited", chat=job.chat_id, retry_after=error.retry_after)
            return False
        if isinstance(error, _TRANSIENT):
            self.pace.flood_waited(job.chat_id, RETRY_S)
            return False
        # The subscriber blocked the bot, the copy is gone, ...: retrying cannot help.
        log.warning("delivery failed", chat=job.chat_id, error=repr(error))
        self.counts.failed += 1
        if not job.copy_id:
            self._tasks.spawn(self._record(job, "failed", 0, error.message))
        return True

    async def _record(
        self, job: _Job, status: st.DeliveryStatus, copy_id: int, why: str = ""
    ) -> None:
        delivery = st.Delivery(
            subscriber=job.subscriber,
            channel_id=job.post.channel_id,
            message_id=job.post.message_id,
            seq=job.post.seq,
            status=status,
            sent_message_id=copy_id,
            error=why[:200],
        )
        await self._store(st.RecordDelivery(delivery=delivery))

    async def _store(self, body: Request[R]) -> R:
        return await self.ctx.call(self.store, body, timeout=STORE_TIMEOUT_S)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` passed, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
