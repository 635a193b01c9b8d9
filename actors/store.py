"""The StoreActor (``store:main``): the single writer of the application database.

It maps each request of :mod:`protocols.store` to one method of
:class:`actors.storage.Store` and nothing else. Its mailbox is the write queue, so one
connection, owned by the actor's thread, does every write and no lock is needed.

Guarantees:

* a write is answered only after its transaction committed (with SQLite's
  ``synchronous=NORMAL`` in WAL mode an answered write survives ``kill -9``);
* under load consecutive writes share one transaction: while more messages wait in the
  mailbox, each write runs in a savepoint of an open batch and its reply is deferred; the
  batch commits when the mailbox is empty (:meth:`on_idle`), at ``batch_limit`` writes,
  once it is ``batch_max_age_s`` old, before any read, and on stop; then every reply of
  the batch goes out;
* bad input (:class:`~actors.storage.StoreError`) is answered ``BadRequest`` /
  ``NotFound``, logged once, and writes nothing; the rest of a batch is unaffected;
* a crash while a write runs rolls back that write only; the batch before it is
  committed and answered when the actor stops for its restart.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable
from typing import Any

from actors.storage import Store, StoreError, Synchronous
from protocols import store as p
from protocols.base import Message
from runtime.actor import Actor, ActorContext, Reply
from runtime.handlers import handles

__all__ = ["READS", "WRITES", "StoreActor"]

Method = Callable[[Store, Any], Message]

# A batch commits at this age even if writes keep coming: it bounds what batching adds
# to a reply's latency when the mailbox never quite empties.
BATCH_MAX_AGE_S = 0.02

WRITES: dict[type[Message], Method] = {
    p.SaveChannel: Store.save_channel,
    p.DeleteChannel: Store.delete_channel,
    p.RecordCheck: Store.record_check,
    p.Subscribe: Store.subscribe,
    p.Unsubscribe: Store.unsubscribe,
    p.PutPosts: Store.put_posts,
    p.DeletePosts: Store.delete_posts,
    p.SaveCursor: Store.save_cursor,
    p.RecordDelivery: Store.record_delivery,
}

READS: dict[type[Message], Method] = {
    p.GetChannel: Store.get_channel,
    p.ListChannels: Store.list_channels,
    p.ListSubscriptions: Store.list_subscriptions,
    p.GetPosts: Store.get_posts,
    p.SearchPosts: Store.search_posts,
    p.PostsSince: Store.posts_since,
    p.GetCursor: Store.get_cursor,
    p.GetDeliveries: Store.get_deliveries,
    p.GetStoreStats: Store.stats,
}


class BatchLost(Exception):
    """The batch's transaction ended without a commit: its writes were not stored."""


class StoreActor(Actor):
    """Owns the store's one connection; answers every request of ``protocols.store``."""

    def __init__(
        self,
        ctx: ActorContext,
        *,
        path: str | os.PathLike[str],
        synchronous: Synchronous = "normal",
        batch_limit: int = 256,
        batch_max_age_s: float = BATCH_MAX_AGE_S,
    ) -> None:
        super().__init__(ctx)
        self.path = path
        self.synchronous: Synchronous = synchronous
        self.batch_limit = batch_limit
        self.batch_max_age_s = batch_max_age_s
        self._batch: list[tuple[concurrent.futures.Future[Message], Message]] = []
        self._batch_started = 0.0

    def on_start(self) -> None:
        """Open the database (WAL) and apply pending migrations."""
        self.store = Store(self.path, synchronous=self.synchronous)
        self.ctx.log.info(
            "store open", path=str(self.path), schema_version=self.store.schema_version
        )

    def on_stop(self) -> None:
        try:
            self._commit_batch()
        finally:
            self.store.close()

    def on_idle(self) -> None:
        self._commit_batch()

    @handles(*WRITES)
    def write(self, body: Message) -> Reply:
        method = WRITES[type(body)]
        if not self._batch and self.ctx.backlog == 0:
            return self._apply(method, body)  # alone: its own transaction
        if not self._batch:
            self.store.begin()
            self._batch_started = time.monotonic()
        reply = self._apply(method, body)  # a savepoint inside the batch's transaction
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        self._batch.append((future, reply))
        full = len(self._batch) >= self.batch_limit
        if full or time.monotonic() - self._batch_started >= self.batch_max_age_s:
            self._commit_batch()
        return future

    @handles(*READS)
    def read(self, body: Message) -> Message:
        # A read sees only committed writes, and never holds back a batch's replies.
        self._commit_batch()
        return self._apply(READS[type(body)], body)

    def _apply(self, method: Method, body: Message) -> Message:
        try:
            return method(self.store, body)
        except StoreError as exc:
            self.ctx.log.info("request refused", request=type(body).__name__, reason=str(exc))
            return exc.to_error()

    def _commit_batch(self) -> None:
        """Commit the open batch, then answer its requests (their futures).

        If the commit fails, or SQLite already rolled the transaction back, every request
        of the batch fails (answered ``Internal``) and the error is raised (a crash).
        """
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            if not self.store.in_transaction:
                raise BatchLost("the batch's transaction was rolled back")
            self.store.commit()
        except BaseException as exc:
            self.store.rollback()
            for future, _ in batch:
                future.set_exception(exc)
            raise
        for future, reply in batch:
            future.set_result(reply)
