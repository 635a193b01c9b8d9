"""Posts into the store: live events queued per channel and written in order, fetched
history, and publishing what the store changed.

* Live events of a channel (``NewPost``, ``EditedPost``, ``DeletedPost``) are queued on its
  :class:`~actors.parser.watch.Watch` and written in arrival order, runs of posts in one
  ``PutPosts`` each, under the channel's lock.
* ``stored.<channel_id>`` events are published only for what a committed write changed
  (new posts, newer edits, deletions), so a post fetched twice is published once.
* A live post past a hole, or any live post while an earlier write is unrecovered, is not
  written: the reconciler is made due at once and fetches the hole and these posts
  together, so the store's newest message id never passes a hole.

Mixed into :class:`~actors.parser.ParserActor`; everything runs on the loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from actors.parser.parsing import post_data
from actors.parser.watch import Watch
from protocols import store as st
from protocols.events import (
    DeletedPost,
    EditedPost,
    NewPost,
    PostDeleted,
    PostEdited,
    PostStored,
    stored_topic,
)
from protocols.session import ChatMessage
from protocols.store import STORE_ADDRESS
from runtime.actor import ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles

__all__ = ["PostWriter"]


class PostWriter:
    """Writes posts to the store and publishes what it stored (a mixin of the parser)."""

    ctx: ActorContext
    watches: dict[int, Watch]

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
