"""Every stored post, in order, for a program outside the runtime: the consumer helper.

A consumer has a name; its position is the ``seq`` of the last post it finished, kept
**in the store** as a cursor (``SaveCursor``/``GetCursor``). The store is the one durable
record of the application: its cursor survives the consumer's host, its writes are
acknowledged after commit, and a cursor never moves backwards, so two restarts racing
cannot rewind it. (A local file would tie the consumer to one disk and one host.)

Guarantees:

* **No gaps.** Posts come from ``PostsSince(after_seq=cursor)`` in ``seq`` order, page by
  page, never from the bus: the bus (``stored.<channel_id>`` events) only wakes the
  consumer early; a lost wake-up delays a page by at most ``poll_s``.
* **At least once, ordered, with a window of one post.** The cursor is saved after the
  loop body has finished with a post (when the next one is asked for, or at
  :meth:`PostConsumer.close`). A consumer killed in between sees that one post again
  after its restart; ``post.seq`` is strictly increasing, so deduplicating is comparing
  with the last ``seq`` one finished (commit it with the result where possible).

    with PostConsumer.connect(settings, name="sheets") as consumer:
        for post in consumer.posts():
            process(post)

It uses :mod:`runtime.client` underneath and knows no actor internals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from config import Settings
from protocols import store as st
from protocols.events import stored_topic
from runtime.client import Client, Subscriber
from runtime.launcher import client_for

__all__ = ["PostConsumer"]

STORE = "store:main"


class PostConsumer:
    """Pages a consumer's posts from the store and keeps its cursor there."""

    def __init__(
        self,
        client: Client,
        subscriber: Subscriber,
        name: str,
        *,
        channel_ids: Sequence[int] = (),
        page: int = 100,
        poll_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        if not name:
            raise ValueError("a consumer needs a name (its cursor's)")
        if not 1 <= page <= st.MAX_PAGE:
            raise ValueError(f"page must be 1..{st.MAX_PAGE}, got {page}")
        self.client = client
        self.subscriber = subscriber
        self.name = name
        self.channel_ids = list(channel_ids)
        self.page = page
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.stop = threading.Event()
        self._saved = -1
        self._done = -1

    @classmethod
    def connect(
        cls,
        settings: Settings,
        name: str,
        channel_ids: Sequence[int] = (),
        page: int = 100,
        poll_s: float = 5.0,
    ) -> PostConsumer:
        """A consumer of the configured system's store and bus (CURVE keys included)."""
        rt = settings.runtime
        client = client_for(settings, identity=f"consumer:{name}")
        topics = [stored_topic(c) for c in channel_ids] or [stored_topic()]
        subscriber = Subscriber(rt.events_out_endpoint, topics, max_frame_bytes=rt.max_frame_bytes)
        return cls(client, subscriber, name, channel_ids=channel_ids, page=page, poll_s=poll_s)

    def cursor(self) -> int:
        """The saved position (0 for a new consumer). Raises RequestError from the store."""
        return self.client.request(STORE, st.GetCursor(name=self.name), self.timeout_s).seq

    def posts(self) -> Iterator[st.Post]:
        """Every post after the saved cursor, in ``seq`` order, until :attr:`stop` is set.

        Blocks while there is nothing new. The cursor moves past a post once the caller
        asks for the next one. Raises RequestError when the store cannot be reached
        (after its request timeout); the cursor then stays at the last finished post.
        """
        after = max(self.cursor(), self._done)
        while not self.stop.is_set():
            page = self.client.request(
                STORE,
                st.PostsSince(after_seq=after, limit=self.page, channel_ids=self.channel_ids),
                self.timeout_s,
            )
            for post in page.posts:
                if post.seq <= after:
                    continue  # never twice, even from a store answering out of order
                yield post
                after = self._done = post.seq
                self._save()
                if self.stop.is_set():
                    return
            if not page.more:
                self._wait()

    def _save(self) -> None:
        if self._done > self._saved:
            self.client.request(
                STORE, st.SaveCursor(name=self.name, seq=self._done), self.timeout_s
            )
            self._saved = self._done

    def _wait(self) -> None:
        """Until a stored-post event (drained: one page read serves them all) or poll_s."""
        if self.subscriber.receive(self.poll_s) is None:
            return
        while self.subscriber.receive(0.001) is not None:
            pass

    def close(self) -> None:
        """Save the cursor of the last finished post and close the connections."""
        try:
            self._save()
        finally:
            self.subscriber.close()
            self.client.close()

    def __enter__(self) -> PostConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
