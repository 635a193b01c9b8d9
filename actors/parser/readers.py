"""The reader pool: which reader takes a channel, joining through it, the readers' session
states, and failover.

* **Choice.** A channel goes to the reader with the fewest channels, under its channel
  limit, not flood-waited, with resolve and join budget left (:meth:`~ReaderPool._best`);
  otherwise the answer says why (``FloodWait`` with the shortest wait, or ``Unavailable``).
  A reader-specific refusal from Telegram (full, flood-waited, unreachable) is noted on the
  reader and the next one is tried.
* **Budgets.** Resolves and joins are counted before they are sent; they survive a restart
  as far as the store knows them (:meth:`~ReaderPool._recount_budgets`).
* **Failover.** A reader that is down hands each of its channels to another reader, which
  joins it; a channel no reader can take keeps its error and is tried again later. A
  reader whose session comes back catches up its channels at once.

Mixed into :class:`~actors.parser.ParserActor`; everything runs on the loop.
"""

from __future__ import annotations

import contextlib
import time

import msgspec

from actors.flood import method_class
from actors.parser.parsing import ChannelRef, parse_ref
from actors.parser.rations import DAY, DOWN_STATES, Reader
from actors.parser.watch import Watch
from config import ParserSettings
from protocols import errors
from protocols import session as s
from protocols import store as st
from protocols.events import SessionState
from protocols.parser import PARSER_ADDRESS
from protocols.store import STORE_ADDRESS
from runtime.actor import ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles

__all__ = ["ReaderPool"]

_TOO_MUCH = "CHANNELS_TOO_MUCH"
_ALREADY = "USER_ALREADY_PARTICIPANT"


class ReaderPool:
    """The reader accounts as one pool (a mixin of the parser actor)."""

    ctx: ActorContext
    settings: ParserSettings
    readers: dict[str, Reader]
    watches: dict[int, Watch]

    def _recount_budgets(self, channels: list[st.Channel], now: float) -> None:
        """Budgets survive a restart as far as the store knows them: each channel a reader
        was given within the last day counts one resolve and one join at its ``added_at``
        (a parser restarting in a loop must not start every day afresh)."""
        wall = time.time()
        added = sorted((c.added_at, c.reader) for c in channels if 0 < wall - c.added_at < DAY)
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

    # -- choosing and joining ----------------------------------------------------------

    def _best(self, ref: ChannelRef, tried: set[str]) -> Reader | errors.Error:
        """The reader with the fewest channels that may take ``ref`` now, else why not."""
        now = time.monotonic()
        waits: list[float] = []
        room = False
        for reader in sorted(self.readers.values(), key=lambda r: len(r.channels)):
            if reader.account in tried or reader.state in DOWN_STATES or not reader.has_room():
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
        if not room and all(r.state not in DOWN_STATES for r in self.readers.values()):
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

    # -- failover ----------------------------------------------------------------------

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
