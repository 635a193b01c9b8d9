"""The reconciler: every watched channel is checked for posts that never came live.

Every ``_TICK_S`` it starts the checks that are due, within each reader's
``calls_per_min`` (a check over budget stays due); a channel whose reader is down is moved
instead (:mod:`.readers`). One check is one history call, paged when more is missing (each
further page is charged to the reader), fetching everything newer than the newest stored
message and storing it oldest first. Periods adapt within ``reconcile_min_s`` ..
``reconcile_max_s``: a check that found missing posts (or failed) returns to the minimum,
live posts without losses double the period, a quiet channel returns to ``reconcile_s``.
The store hears of a check (``RecordCheck``) when it found or failed something, and
otherwise at least every ``reconcile_max_s``.

Mixed into :class:`~actors.parser.ParserActor`; everything runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time

from actors.parser.rations import Reader
from actors.parser.watch import Watch
from config import ParserSettings
from protocols import errors
from protocols import session as s
from protocols import store as st
from protocols.session import ChatMessage
from protocols.store import STORE_ADDRESS
from runtime.actor import ActorContext
from runtime.errors import RequestError

__all__ = ["Reconciler"]

_PAGE = 100  # messages per history call
_TICK_S = 0.2  # how often the reconciler looks for due channels


class Reconciler:
    """Periodic checks of every watched channel (a mixin of the parser actor)."""

    ctx: ActorContext
    settings: ParserSettings
    readers: dict[str, Reader]
    watches: dict[int, Watch]

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
