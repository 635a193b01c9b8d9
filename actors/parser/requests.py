"""The parser conversation's requests: AddChannel, RemoveChannel, GetParserStatus.

Adding is one flow per channel reference: a second AddChannel of the same reference while
the first runs waits for the first one's answer, and a channel watched already (under any
spelling) is answered ``created=False``. A new channel is resolved and joined through the
best reader (:mod:`.readers`), saved to the store, then backfilled with its latest posts;
a failed backfill is left to the reconciler, due at once. Removing marks the channel
removed in the store, and leaves it on Telegram when ``leave_on_remove`` is set.

Mixed into :class:`~actors.parser.ParserActor`; every handler runs on the loop.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from actors.parser.parsing import ChannelRef, parse_ref
from actors.parser.rations import Reader
from actors.parser.watch import Watch
from config import ParserSettings
from protocols import errors
from protocols import parser as p
from protocols import session as s
from protocols import store as st
from protocols.base import Message
from protocols.store import STORE_ADDRESS
from runtime.actor import ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles

__all__ = ["ChannelRequests"]

_MAX_BY = 256  # who asked: an address or a user, recorded in the store's audit


class ChannelRequests:
    """The parser's requests (a mixin of the parser actor)."""

    ctx: ActorContext
    settings: ParserSettings
    readers: dict[str, Reader]
    watches: dict[int, Watch]
    _adding: dict[str, asyncio.Future[Message]]

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
