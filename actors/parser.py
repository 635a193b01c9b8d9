"""The channel monitor: ``parser:main`` keeps every post of every watched channel.

Guarantees (with the store's idempotent writes on ``(channel id, message id)``):

* **Every post, once.** Live posts, edits and deletions come from the session actors'
  events (``post.<channel_id>``), go to the store and are published on
  ``stored.<channel_id>`` only after the store committed them. Because the bus is at most
  once and Telegram withholds or drops updates, the parser also fetches history since the
  newest stored message id: for every channel at start, for a reader's channels when its
  session comes back, and periodically (the reconciler). Posts fetched twice are stored
  once; only what the store changed is published.
* **Rationed readers.** Channels go to the reader with the fewest channels, under its
  channel limit, not flood-waited, with resolve and join budget left. Resolves, joins and
  history calls are counted per reader against ``[parser]`` budgets; a request that would
  break one is answered ``FloodWait(retry_after)`` and nothing is sent to Telegram.
* **Failover.** A reader that is revoked, logged out, or flood-waited longer than
  ``move_after_flood_s`` hands its channels to other readers (they join them there), as
  far as their limits and join budgets allow; the rest wait and are retried.
* **Adaptive reconciling.** Each channel is checked within ``reconcile_min_s`` ..
  ``reconcile_max_s``: a check that found missing posts shortens its period to the
  minimum, live posts without losses double it, a quiet channel returns to
  ``reconcile_s``. Checks never exceed a reader's ``calls_per_min``; one check is one
  history call that also fetches what is missing.

Every state of the actor lives on the process's asyncio loop (all handlers are
coroutines), so nothing needs a thread lock; per channel, an asyncio lock orders writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from actors.flood import method_class
from actors.parsing import ChannelRef, RefError, parse_ref, post_data
from actors.session import session_address
from config import ParserSettings
from protocols import errors
from protocols import parser as p
from protocols import session as s
from protocols import store as st
from protocols.base import Message, Request
from protocols.envelope import Envelope
from protocols.events import (
    DeletedPost,
    EditedPost,
    NewPost,
    PostDeleted,
    PostEdited,
    PostStored,
    SessionState,
    post_topic,
    session_topic,
    stored_topic,
)
from protocols.session import ChatMessage
from runtime.actor import Actor, ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles
from runtime.loop import get_loop_thread

__all__ = ["PARSER_ADDRESS", "STORE_ADDRESS", "ParserActor", "Quota"]

PARSER_ADDRESS = "parser:main"
STORE_ADDRESS = "store:main"

R = TypeVar("R", bound=Message)

_PAGE = 100  # messages per history call
_TICK_S = 0.2  # how often the reconciler looks for due channels
_BOOT_RETRY_S = 0.5
_DAY = 86400.0
_MAX_BY = 256  # who asked: an address or a user, recorded in the store's audit
_DOWN_STATES = frozenset({"failed", "unauthorized"})
_TOO_MUCH = "CHANNELS_TOO_MUCH"
_ALREADY = "USER_ALREADY_PARTICIPANT"


class Quota:
    """Sliding-window rations: at most ``n`` uses in any ``window_s`` seconds, per window.

    Pure bookkeeping (time is passed in), so it is tested without waiting.
    """

    def __init__(self, *limits: tuple[float, int]) -> None:
        self.limits = limits
        self._uses: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more use fits every window (0 when it fits now)."""
        longest = max(w for w, _ in self.limits)
        while self._uses and self._uses[0] <= now - longest:
            self._uses.popleft()
        wait = 0.0
        for window, n in self.limits:
            recent = [t for t in self._uses if t > now - window]
            if len(recent) >= n:
                wait = max(wait, recent[len(recent) - n] + window - now)
        return wait

    def take(self, now: float) -> None:
        self._uses.append(now)

    def left(self, now: float) -> int:
        """Uses left in the tightest window now."""
        return min(n - sum(1 for t in self._uses if t > now - w) for w, n in self.limits)


class Bucket:
    """A token bucket of ``per_min`` calls a minute (burst: a tenth of a minute's worth)."""

    def __init__(self, per_min: int) -> None:
        self.rate = per_min / 60.0
        self.burst = max(1.0, per_min / 10.0)
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self, now: float) -> bool:
        """One call now if the budget allows it (True), else nothing is taken."""
        self._refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def charge(self, now: float) -> None:
        """Count a call made anyway (a further page): the budget may go below zero, and
        later calls wait until it is paid back."""
        self._refill(now)
        self.tokens -= 1.0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now


@dataclass
class Reader:
    """One reader account as the parser rations it."""

    account: str
    limit: int
    resolves: Quota
    joins: Quota
    calls: Bucket
    channels: set[int] = field(default_factory=set)
    state: str = "unknown"
    full: bool = False  # Telegram answered CHANNELS_TOO_MUCH
    blocked: dict[str, float] = field(default_factory=dict)  # method class -> until

    @property
    def address(self) -> str:
        return session_address(self.account)

    def blocked_for(self, method_class: str, now: float) -> float:
        return max(0.0, self.blocked.get(method_class, 0.0) - now)

    def down(self, now: float, move_after: float) -> bool:
        """Revoked, logged out, or flood-waited for long: its channels should move."""
        if self.state in _DOWN_STATES:
            return True
        return max(self.blocked_for("history", now), 0.0) > move_after

    def has_room(self) -> bool:
        return not self.full and len(self.channels) < self.limit


@dataclass
class Watch:
    """A watched channel: the store's record, and the reconciler's view of it."""

    channel: st.Channel
    period: float
    next_check: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: list[tuple[str, ChatMessage | list[int]]] = field(default_factory=list)
    draining: bool = False
    checking: bool = False
    live: bool = False  # a live post arrived since the last check
    resync_from: int = -1  # a failed write: catch up from here (below the newest stored)
    error: str = ""
    newest_seen: int = 0
    recorded_at: float = 0.0  # when the store last heard of a check (monotonic)

    @property
    def id(self) -> int:
        return self.channel.id

    def since(self) -> int:
        last = self.channel.last_message_id
        return last if self.resync_from < 0 else min(last, self.resync_from)


class ParserActor(Actor):
    """Answers AddChannel, RemoveChannel and GetParserStatus; see the module docstring."""

    def __init__(self, ctx: ActorContext, settings: ParserSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.readers: dict[str, Reader] = {
            name: Reader(
                account=name,
                limit=settings.channel_limit,
                resolves=Quota(
                    (60.0, settings.resolves_per_min), (_DAY, settings.resolves_per_day)
                ),
                joins=Quota((3600.0, settings.joins_per_hour), (_DAY, settings.joins_per_day)),
                calls=Bucket(settings.calls_per_min),
            )
            for name in settings.readers
        }
        self.watches: dict[int, Watch] = {}
        self._adding: dict[str, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._ready: asyncio.Event | None = None
        self._loop = get_loop_thread()

    # -- lifecycle -------------------------------------------------------------------

    def on_start(self) -> None:
        self.ctx.subscribe(post_topic())
        for name in self.readers:
            self.ctx.subscribe(session_topic(name))
        self._loop.run(self._open(), timeout=5.0)

    def on_stop(self) -> None:
        self._loop.run(self._close(), timeout=10.0)

    async def _open(self) -> None:
        self._ready = asyncio.Event()
        self._spawn(self._boot())

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.ctx.log.error("parser task failed", exc_info=task.exception())

    async def _boot(self) -> None:
        """Load the watched channels from the store (waiting for it), then catch up."""
        while True:
            try:
                listed = await self._call(STORE_ADDRESS, st.ListChannels())
                break
            except RequestError as exc:
                self.ctx.log.info("waiting for the store", error=str(exc.error.message))
                await asyncio.sleep(_BOOT_RETRY_S)
        now = time.monotonic()
        for channel in listed.channels:
            if channel.state == "removed":
                continue
            self._watch(channel, next_check=now)  # catch-up on start: every channel now
        self._recount_budgets(listed.channels, now)
        for reader in self.readers.values():
            self._spawn(self._read_state(reader))
        assert self._ready is not None
        self._ready.set()
        self.ctx.log.info(
            "parser watching", channels=len(self.watches), readers=sorted(self.readers)
        )
        await self._reconcile_forever()

    def _recount_budgets(self, channels: list[st.Channel], now: float) -> None:
        """Budgets survive a restart as far as the store knows them: each channel a reader
        was given within the last day counts one resolve and one join at its ``added_at``
        (a parser restarting in a loop must not start every day afresh)."""
        wall = time.time()
        added = sorted((c.added_at, c.reader) for c in channels if 0 < wall - c.added_at < _DAY)
        for added_at, account in added:
            reader = self.readers.get(account)
            if reader is not None:
                reader.resolves.take(now - (wall - added_at))
                reader.joins.take(now - (wall - added_at))

    async def _read_state(self, reader: Reader) -> None:
        with contextlib.suppress(RequestError):
            status = await self._call(reader.address, s.GetSessionStatus(), timeout=5.0)
            if reader.state == "unknown":
                reader.state = status.state

    def _watch(self, channel: st.Channel, next_check: float) -> Watch:
        watch = Watch(channel=channel, period=self.settings.reconcile_s, next_check=next_check)
        self.watches[channel.id] = watch
        reader = self.readers.get(channel.reader)
        if reader is not None:
            reader.channels.add(channel.id)
        return watch

    async def guard(self, work: Awaitable[Message], body: Message, env: Envelope) -> Message:
        """Every request: wait until booted; failures of the parts asked become answers."""
        try:
            assert self._ready is not None
            await self._ready.wait()
            return await work
        except RequestError as exc:
            return exc.error
        except RefError as exc:
            return errors.BadRequest(message=str(exc))

    async def _call(self, target: str, body: Request[R], timeout: float = 0.0) -> R:
        return await self.ctx.call(target, body, timeout=timeout or self.settings.call_timeout_s)

    # -- requests --------------------------------------------------------------------

    @handles(p.AddChannel)
    async def add(self, body: p.AddChannel) -> Message:
        ref = parse_ref(body.ref)
        if not -1 <= body.backfill <= st.MAX_PAGE:
            return errors.BadRequest(message=f"backfill must be -1..{st.MAX_PAGE}")
        if len(body.by) > _MAX_BY:
            return errors.BadRequest(message=f"by is longer than {_MAX_BY} characters")
        known = self._find(ref)
        if known is not None:
            return p.ChannelAdded(channel=self._health(known), created=False)
        running = self._adding.get(ref.key)
        if running is None:
            running = asyncio.ensure_future(self._add(ref, body))
            self._adding[ref.key] = running
            running.add_done_callback(lambda _: self._adding.pop(ref.key, None))
        return await asyncio.shield(running)

    @handles(p.RemoveChannel)
    async def remove(self, body: p.RemoveChannel) -> Message:
        if len(body.by) > _MAX_BY:
            return errors.BadRequest(message=f"by is longer than {_MAX_BY} characters")
        watch = self._find(parse_ref(body.ref))
        if watch is None:
            return errors.NotFound(message=f"{body.ref!r} is not watched")
        async with watch.lock:
            await self._call(STORE_ADDRESS, st.DeleteChannel(channel_id=watch.id, by=body.by))
            self.watches.pop(watch.id, None)
            reader = self.readers.get(watch.channel.reader)
            left = False
            if reader is not None:
                reader.channels.discard(watch.id)
                if self.settings.leave_on_remove:
                    try:
                        await self._call(reader.address, s.LeaveChannel(peer=watch.id))
                        left = True
                    except RequestError as exc:
                        self.ctx.log.warning("leave failed", channel=watch.id, error=exc.error)
        self.ctx.log.info("channel removed", channel=watch.id, by=body.by, left=left)
        return p.ChannelRemoved(channel_id=watch.id, left=left)

    @handles(p.GetParserStatus)
    async def status(self, body: p.GetParserStatus) -> Message:
        now = time.monotonic()
        readers = [
            p.ReaderInfo(
                account=r.account,
                state=r.state,
                channels=len(r.channels),
                limit=r.limit,
                flood_wait_s=max(r.blocked_for(c, now) for c in ("history", "join", "resolve")),
                resolves_left=max(r.resolves.left(now), 0),
            )
            for r in self.readers.values()
        ]
        channels = [self._health(w) for w in self.watches.values()]
        return p.ParserStatus(readers=readers, channels=channels)

    def _find(self, ref: ChannelRef) -> Watch | None:
        for watch in self.watches.values():
            channel = watch.channel
            if (
                (ref.kind == "id" and channel.id == ref.channel_id)
                or (ref.kind == "username" and channel.username.lower() == ref.value.lower())
                or (ref.kind == "invite" and channel.invite_link.endswith(f"+{ref.value}"))
            ):
                return watch
        return None

    def _health(self, watch: Watch) -> st.Channel:
        lag = 0.0
        if watch.newest_seen > watch.channel.last_message_id and watch.channel.last_post_at:
            lag = max(0.0, time.time() - watch.channel.last_post_at)
        return msgspec.structs.replace(watch.channel, error=watch.error, lag_s=lag)

    # -- adding ----------------------------------------------------------------------

    async def _add(self, ref: ChannelRef, body: p.AddChannel) -> Message:
        """Resolve, join, save and backfill through the best reader; a typed error else."""
        tried: set[str] = set()
        while True:
            reader = self._best(ref, tried)
            if isinstance(reader, errors.Error):
                return reader
            tried.add(reader.account)
            try:
                peer = await self._join(reader, ref)
            except RequestError as exc:
                if self._reader_refused(reader, exc.error):
                    continue
                return exc.error
            if not peer.broadcast:
                return errors.BadRequest(message=f"{body.ref!r} is a group, not a channel")
            known = self.watches.get(peer.id)
            if known is not None:  # another spelling of a watched channel
                return p.ChannelAdded(channel=self._health(known), created=False)
            return await self._save_and_backfill(reader, ref, peer, body)

    def _best(self, ref: ChannelRef, tried: set[str]) -> Reader | errors.Error:
        """The reader with the fewest channels that may take ``ref`` now, else why not."""
        now = time.monotonic()
        waits: list[float] = []
        room = False
        for reader in sorted(self.readers.values(), key=lambda r: len(r.channels)):
            if reader.account in tried or reader.state in _DOWN_STATES or not reader.has_room():
                continue
            room = True
            wait = max(
                reader.blocked_for("join", now),
                reader.blocked_for("history", now),
                reader.joins.wait(now),
            )
            if ref.kind == "username":
                wait = max(wait, reader.blocked_for("resolve", now), reader.resolves.wait(now))
            if wait <= 0:
                return reader
            waits.append(wait)
        if waits:
            return errors.FloodWait(
                retry_after=round(min(waits), 1),
                method="AddChannel",
                message="every reader that could take it is flood-waited or out of budget",
            )
        if not self.readers:
            return errors.Unavailable(message="no reader accounts are configured (parser.readers)")
        if not room and all(r.state not in _DOWN_STATES for r in self.readers.values()):
            return errors.Unavailable(message=f"{_TOO_MUCH}: every reader is at its channel limit")
        if not room and tried:
            return errors.Unavailable(message=f"{_TOO_MUCH}: no other reader can take it")
        return errors.Unavailable(message="no reader account can take channels now")

    def _reader_refused(self, reader: Reader, error: errors.Error) -> bool:
        """Note a reader-specific refusal (full, flood-waited); True to try another."""
        if isinstance(error, errors.FloodWait):
            until = time.monotonic() + error.retry_after
            reader.blocked[method_class(error.method) if error.method else "join"] = until
            return True
        if error.message.startswith(_TOO_MUCH):
            reader.full = True
            return True
        return isinstance(error, (errors.Unavailable, errors.Timeout, errors.NoSuchAddress))

    async def _join(self, reader: Reader, ref: ChannelRef, moving: bool = False) -> s.Peer:
        """Resolve (rationed) and join ``ref`` as ``reader``; RequestError if refused.

        A channel found watched already is not joined again, unless it is ``moving``.
        """
        now = time.monotonic()
        if ref.kind == "username":
            reader.resolves.take(now)
            peer = await self._call(reader.address, s.ResolvePeer(peer=ref.value))
            if peer.id in self.watches and not moving:
                return peer
        elif ref.kind == "id":
            peer = await self._call(reader.address, s.ResolvePeer(peer=ref.channel_id))
            if peer.id in self.watches and not moving:
                return peer
        reader.joins.take(now)
        try:
            joined = await self._call(reader.address, s.JoinChannel(peer=ref.peer))
        except RequestError as exc:
            if not exc.error.message.startswith(_ALREADY):
                raise
            return await self._call(reader.address, s.ResolvePeer(peer=ref.peer))
        return joined.peer

    async def _save_and_backfill(
        self, reader: Reader, ref: ChannelRef, peer: s.Peer, body: p.AddChannel
    ) -> Message:
        channel = st.Channel(
            id=peer.id,
            username=peer.username,
            title=peer.title,
            invite_link=ref.peer if ref.kind == "invite" else "",
            reader=reader.account,
            state="active",
            added_by=body.by,
            added_at=int(time.time()),
        )
        saved = await self._call(STORE_ADDRESS, st.SaveChannel(channel=channel, by=body.by))
        watch = self._watch(saved.channel, next_check=time.monotonic() + self.settings.reconcile_s)
        count = self.settings.backfill if body.backfill < 0 else body.backfill
        backfilled = 0
        async with watch.lock:
            try:
                history = await self._call(
                    reader.address, s.FetchHistory(peer=peer.id, limit=max(count, 1))
                )
                backfilled = await self._store(watch, history.messages)
            except RequestError as exc:
                watch.error = f"backfill: {exc.error.message}"
                watch.next_check = time.monotonic()  # the reconciler fetches it soon
        self.ctx.log.info(
            "channel added", channel=peer.id, reader=reader.account, backfilled=backfilled
        )
        return p.ChannelAdded(channel=self._health(watch), backfilled=backfilled)

    # -- live events -----------------------------------------------------------------

    @handles(NewPost)
    async def on_new_post(self, event: NewPost) -> None:
        self._queue(event.channel_id, ("new", event.message))

    @handles(EditedPost)
    async def on_edited_post(self, event: EditedPost) -> None:
        self._queue(event.channel_id, ("edit", event.message))

    @handles(DeletedPost)
    async def on_deleted_post(self, event: DeletedPost) -> None:
        self._queue(event.channel_id, ("delete", list(event.message_ids)))

    def _queue(self, channel_id: int, item: tuple[str, ChatMessage | list[int]]) -> None:
        watch = self.watches.get(channel_id)
        if watch is None:
            return
        watch.live = True
        watch.pending.append(item)
        if not watch.draining:
            watch.draining = True
            self._spawn(self._drain(watch))

    async def _drain(self, watch: Watch) -> None:
        """Write a channel's queued events in order: runs of posts in one batch each."""
        try:
            async with watch.lock:
                while watch.pending:
                    kind, payload = watch.pending[0]
                    if kind == "delete":
                        watch.pending.pop(0)
                        assert isinstance(payload, list)
                        await self._delete(watch, payload)
                        continue
                    run: list[tuple[str, ChatMessage]] = []
                    while watch.pending and watch.pending[0][0] != "delete":
                        if len(run) >= st.MAX_BATCH:
                            break
                        k, m = watch.pending.pop(0)
                        assert isinstance(m, ChatMessage)
                        run.append((k, m))
                    await self._store(watch, [m for _, m in run], live=True)
        finally:
            watch.draining = False

    async def _delete(self, watch: Watch, message_ids: list[int]) -> None:
        try:
            put = await self._call(
                STORE_ADDRESS, st.DeletePosts(channel_id=watch.id, message_ids=message_ids)
            )
        except RequestError as exc:
            watch.error = f"delete: {exc.error.message}"
            return
        gone = [post.message_id for post in put.edited]
        if gone:
            self.ctx.publish(
                stored_topic(watch.id),
                PostDeleted(channel_id=watch.id, message_ids=gone, last_seq=put.last_seq),
            )

    async def _store(
        self,
        watch: Watch,
        messages: Iterable[ChatMessage],
        live: bool = False,
    ) -> int:
        """Put ``messages`` (any order, repeats allowed) and publish what the store changed.

        Returns how many posts were new. A failed write is remembered so the next check
        fetches from below it; raises nothing for the store's errors (live) or raises
        RequestError (fetched: the caller records it).
        """
        newest: dict[int, st.PostData] = {}
        for message in messages:
            try:
                post = post_data(message)
            except ValueError as exc:
                self.ctx.log.warning("post skipped", channel=watch.id, error=str(exc))
                continue
            old = newest.get(post.message_id)
            if old is None or post.edit_date >= old.edit_date:
                newest[post.message_id] = post
        posts = [newest[k] for k in sorted(newest)]
        last = watch.channel.last_message_id
        if live and posts and last and posts[0].message_id > last + 1:
            # A live post past a hole: Telegram may have dropped the posts between
            # (channelDifferenceTooLong, withheld updates). Fetch from below the hole.
            watch.resync_from = last if watch.resync_from < 0 else min(watch.resync_from, last)
            watch.next_check = time.monotonic()
        if live and watch.resync_from >= 0:
            # Below these posts is a hole (a failed write, or one Telegram left): writing
            # them now would move the store's last_message_id past it, and a parser
            # restarted before the catch-up would never look there. The catch-up, due at
            # once, fetches the hole and these posts together, in order.
            watch.next_check = min(watch.next_check, time.monotonic())
            return 0
        inserted = 0
        for start in range(0, len(posts), st.MAX_BATCH):
            chunk = posts[start : start + st.MAX_BATCH]
            try:
                put = await self._call(STORE_ADDRESS, st.PutPosts(channel_id=watch.id, posts=chunk))
                inserted += put.inserted
                self._publish(watch, put)
            except RequestError as exc:
                first = chunk[0].message_id - 1
                if watch.resync_from < 0 or first < watch.resync_from:
                    watch.resync_from = first
                watch.error = f"store: {exc.error.message}"
                watch.next_check = min(watch.next_check, time.monotonic() + 1.0)
                if not live:
                    raise
                self.ctx.log.warning("live posts not stored", channel=watch.id, error=exc.error)
                return inserted
            last = max(put.last_message_id, chunk[-1].message_id, watch.channel.last_message_id)
            watch.channel = msgspec.structs.replace(
                watch.channel,
                last_message_id=last,
                last_post_at=max(watch.channel.last_post_at, chunk[-1].date),
            )
        if posts and not live:
            watch.resync_from = -1
        return inserted

    def _publish(self, watch: Watch, put: st.PostsPut) -> None:
        """Publish what one committed PutPosts changed: new posts and newer edits."""
        topic = stored_topic(watch.id)
        for post in put.stored:
            self.ctx.publish(topic, PostStored(post=post))
        for post in put.edited:
            self.ctx.publish(topic, PostEdited(post=post))

    # -- readers' sessions -----------------------------------------------------------

    @handles(SessionState)
    async def on_session_state(self, event: SessionState) -> None:
        reader = self.readers.get(event.account)
        if reader is None:
            return
        before, reader.state = reader.state, event.state
        now = time.monotonic()
        if event.state == "flood-wait":
            kind = method_class(event.reason)
            reader.blocked[kind] = max(reader.blocked.get(kind, 0.0), now + event.retry_after)
        elif event.state == "authorized" and before != "authorized":
            reader.full = False
            for channel_id in reader.channels:  # catch up what was posted meanwhile
                watch = self.watches.get(channel_id)
                if watch is not None:
                    watch.next_check = now
            self.ctx.log.info("reader back: catching up", reader=reader.account, was=before)

    # -- the reconciler --------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            self._reconcile_once(time.monotonic())

    def _reconcile_once(self, now: float) -> None:
        """Start the checks that are due and within their reader's budget; move the
        channels of readers that are down."""
        due = heapq.nsmallest(
            len(self.watches),
            (w for w in self.watches.values() if w.next_check <= now and not w.checking),
            key=lambda w: w.next_check,
        )
        for watch in due:
            reader = self.readers.get(watch.channel.reader)
            if reader is None or reader.down(now, self.settings.move_after_flood_s):
                watch.checking = True
                self._spawn(self._move(watch, reader))
                continue
            wait = reader.blocked_for("history", now)
            if wait > 0:
                watch.next_check = now + wait
                continue
            if not reader.calls.take(now):
                continue  # out of calls this minute: stays due
            watch.checking = True
            self._spawn(self._check(watch, reader))

    async def _check(self, watch: Watch, reader: Reader) -> None:
        """One check: fetch what is newer than the newest stored post, store it.

        The store hears of the check (``RecordCheck``) when it found or failed something,
        and otherwise at least every ``reconcile_max_s``: a quiet channel costs one
        Telegram call a period and no write.
        """
        missed = 0
        failed_before = bool(watch.error)
        try:
            async with watch.lock:
                missed = await self._catch_up(watch, reader)
            watch.error = ""
        except RequestError as exc:
            error = exc.error
            watch.error = f"{type(error).__name__}: {error.message}"
            if isinstance(error, errors.FloodWait):
                reader.blocked["history"] = time.monotonic() + error.retry_after
            watch.period = self.settings.reconcile_min_s
        else:
            watch.period = self._next_period(watch, missed)
        finally:
            watch.live = False
            watch.checking = False
            now = time.monotonic()
            if watch.resync_from >= 0 and not watch.error:
                watch.next_check = now  # a live post showed a hole meanwhile
            else:
                watch.next_check = now + watch.period * random.uniform(0.9, 1.1)
        if (
            missed
            or watch.error
            or failed_before
            or now - watch.recorded_at > self.settings.reconcile_max_s
        ):
            watch.recorded_at = now
            with contextlib.suppress(RequestError):
                await self._call(
                    STORE_ADDRESS,
                    st.RecordCheck(
                        channel_id=watch.id,
                        newest_id=watch.newest_seen,
                        checked_at=int(time.time()),
                        error=watch.error,
                    ),
                )

    def _next_period(self, watch: Watch, missed: int) -> float:
        cfg = self.settings
        if missed:
            return cfg.reconcile_min_s
        if watch.live:
            return min(cfg.reconcile_max_s, watch.period * 2)
        return min(cfg.reconcile_s, watch.period * 2)

    async def _catch_up(self, watch: Watch, reader: Reader) -> int:
        """Fetch (paged, newest first) every message newer than the newest stored one and
        store them oldest first; returns how many were new to the store."""
        since = watch.since()
        fetched: list[ChatMessage] = []
        offset = 0
        while len(fetched) < self.settings.catch_up_limit:
            history = await self._call(
                reader.address,
                s.FetchHistory(peer=watch.id, limit=_PAGE, offset_id=offset, min_id=since),
            )
            fetched.extend(history.messages)
            if len(history.messages) < _PAGE:
                break
            offset = min(m.id for m in history.messages)
            reader.calls.charge(time.monotonic())  # every further page counts too
        if fetched:
            watch.newest_seen = max(watch.newest_seen, max(m.id for m in fetched))
        if not fetched:
            watch.resync_from = -1
            return 0
        new = await self._store(watch, fetched)
        if new:
            self.ctx.log.info("reconciled missing posts", channel=watch.id, posts=new)
        return new

    async def _move(self, watch: Watch, old: Reader | None) -> None:
        """Hand a channel of a reader that is down to another reader (join there).

        Without a reader that can take it now, the channel keeps its error and is tried
        again after ``reconcile_min_s``.
        """
        try:
            target = await self._rejoin(watch, old)
            if target is not None:
                moved = msgspec.structs.replace(watch.channel, reader=target.account)
                saved = await self._call(
                    STORE_ADDRESS, st.SaveChannel(channel=moved, by=PARSER_ADDRESS)
                )
                if old is not None:
                    old.channels.discard(watch.id)
                target.channels.add(watch.id)
                watch.channel = msgspec.structs.replace(
                    saved.channel,
                    last_message_id=max(
                        saved.channel.last_message_id, watch.channel.last_message_id
                    ),
                )
                watch.error = ""
                self.ctx.log.info("channel moved", channel=watch.id, to=target.account)
        except RequestError as exc:
            watch.error = f"move: {exc.error.message}"
        finally:
            watch.checking = False
            now = time.monotonic()
            # Moved: catch up through the new reader at once; else try again later.
            watch.next_check = now + self.settings.reconcile_min_s if watch.error else now

    async def _rejoin(self, watch: Watch, old: Reader | None) -> Reader | None:
        """Join the channel as the best other reader; None (and ``watch.error``) if none can."""
        ref = self._rejoin_ref(watch.channel)
        tried = {old.account} if old is not None else set()
        while True:
            target = self._best(ref, tried)
            if isinstance(target, errors.Error):
                watch.error = f"reader down, not moved: {target.message}"
                return None
            tried.add(target.account)
            try:
                await self._join(target, ref, moving=True)
                return target
            except RequestError as exc:
                if not self._reader_refused(target, exc.error):
                    watch.error = f"move: {exc.error.message}"
                    return None

    @staticmethod
    def _rejoin_ref(channel: st.Channel) -> ChannelRef:
        if channel.username:
            return ChannelRef("username", channel.username)
        if channel.invite_link:
            return parse_ref(channel.invite_link)
        return ChannelRef("id", str(channel.id))
