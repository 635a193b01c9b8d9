"""The application database behind ``store:main``: one method per request, SQLite inside.

:class:`Store` is the narrow interface the StoreActor maps its messages to: each public
method takes one request of :mod:`protocols.store` and returns its reply, or raises
:class:`StoreError` carrying the typed error to answer (``BadRequest``, ``NotFound``), in
which case nothing was written. Nothing here knows of actors or ZeroMQ, so
``Store(":memory:")`` works in a test, and another engine (PostgreSQL) is another class
with the same methods.

SQLite runs in WAL mode with ``foreign_keys=ON``; every write method is one transaction
(``BEGIN IMMEDIATE``), or a savepoint inside the caller's transaction (:meth:`begin` /
:meth:`commit` group several requests into one commit). With ``synchronous=NORMAL`` a
committed transaction survives the process being killed (it is in the WAL, which the OS
holds); only a power loss or OS crash may lose the last commits. ``FULL`` syncs the WAL on
every commit and survives those too, at a cost per commit.

Post text is indexed for full-text search (FTS5, external content over ``posts``) by the
Store itself: entries are queued by each write and written just before the commit (FTS5
flushes at every savepoint and trigger, which cost several times a write), so search
sees committed posts.

The connection belongs to the thread that built the Store (the actor's thread).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from actors.store_migrations import apply_migrations, schema_version
from protocols import errors
from protocols import store as p

__all__ = ["Invalid", "Missing", "Store", "StoreError", "Synchronous"]

Synchronous = Literal["normal", "full"]

INT64_MAX = 2**63 - 1
MAX_NAME = 200  # subscriber, cursor, reader and added_by names
MAX_TITLE = 256
MAX_LINK = 256
MAX_ERROR = 1000  # longer error texts are cut, not refused
MAX_KEYWORDS = 50
MAX_KEYWORD = 100
MAX_QUERY = 1000
MAX_MEDIA = 32
MAX_CHANNEL_FILTER = 1000

CHANNEL_STATES: tuple[str, ...] = get_args(p.ChannelState)
DELIVERY_STATES: tuple[str, ...] = get_args(p.DeliveryStatus)

_CHANNEL_COLUMNS = (
    "c.id, c.username, c.title, c.invite_link, c.reader, c.state, c.added_by, c.added_at,"
    " c.error, g.last_message_id, g.last_post_at, g.last_check_at, g.lag_s"
)
_CHANNEL_SELECT = (
    f"SELECT {_CHANNEL_COLUMNS} FROM channels c JOIN progress g ON g.channel_id = c.id"
)
_POST_COLUMNS = (
    "p.seq, p.channel_id, p.message_id, p.date, p.text, p.edit_date, p.media, p.views,"
    " p.forwards, p.deleted"
)
_DELIVERY_COLUMNS = (
    "subscriber, channel_id, message_id, seq, status, sent_message_id, error, attempts, updated_at"
)


class StoreError(Exception):
    """A request the store refuses; :meth:`to_error` is the typed answer."""

    def to_error(self) -> errors.Error:
        raise NotImplementedError


class Invalid(StoreError):
    """Malformed or out-of-range input: answered ``BadRequest``."""

    def to_error(self) -> errors.Error:
        return errors.BadRequest(message=str(self))


class Missing(StoreError):
    """The request names something the store does not hold: answered ``NotFound``."""

    def to_error(self) -> errors.Error:
        return errors.NotFound(message=str(self))


@dataclass(frozen=True)
class _Change:
    """A post a write changed: new (``is_new``) or edited, as stored."""

    is_new: bool
    post: p.Post


class Store:
    """The application database in one SQLite file (or ``":memory:"``).

    Opening creates the file (and its directory) if needed, sets WAL mode and applies the
    pending migrations. Raises ``sqlite3.Error`` if the file cannot be opened and
    :class:`~actors.store_migrations.SchemaTooNew` if a newer version migrated it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._clock = clock
        self._savepoints = 0
        # (post rowid, text, text it replaces): index entries due at the next commit.
        self._unindexed: list[tuple[int, str, str | None]] = []
        self.commits = 0  # transactions committed since opening
        # Autocommit mode: transactions are begun and ended here, explicitly.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            (mode,) = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode not in ("wal", "memory"):  # another connection holds it in rollback mode
                raise sqlite3.OperationalError(f"{self.path} could not switch to WAL ({mode})")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self.schema_version = apply_migrations(self._conn)
        except BaseException:
            self._conn.close()
            raise

    # -- transactions ---------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def begin(self) -> None:
        """Open a transaction that the following writes join, until :meth:`commit`."""
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the open transaction: when this returns, its writes are durable."""
        self._write_index()
        self._conn.execute("COMMIT")
        self.commits += 1

    def rollback(self) -> None:
        self._unindexed.clear()
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All of the block or none of it: a transaction, or a savepoint inside one."""
        if not self._conn.in_transaction:
            self.begin()
            try:
                yield
                self.commit()
            except BaseException:
                self.rollback()
                raise
            return
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        queued = len(self._unindexed)
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            del self._unindexed[queued:]
            raise
        finally:
            self._conn.execute(f"RELEASE {name}")
            self._savepoints -= 1

    def close(self) -> None:
        """Roll back anything uncommitted and close the file."""
        self.rollback()
        self._conn.close()

    def integrity_check(self) -> str:
        """``"ok"``, or what SQLite's ``PRAGMA integrity_check`` found wrong, or that the
        full-text index does not match the posts."""
        found = "\n".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))
        try:
            self._conn.execute(
                "INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)"
            )
        except sqlite3.DatabaseError as exc:
            return (
                f"full-text index: {exc}" if found == "ok" else f"{found}\nfull-text index: {exc}"
            )
        return found

    # -- channels -----------------------------------------------------------------

    def save_channel(self, req: p.SaveChannel) -> p.ChannelSaved:
        channel_id = _channel_id(req.channel.id)
        fields = _channel_fields(req.channel)
        by = _name(req.by, "by", required=False)
        fields["added_by"] = fields["added_by"] or by
        fields["added_at"] = fields["added_at"] or self._now()
        with self.atomic():
            old = self._conn.execute(
                "SELECT state FROM channels WHERE id = ?", (channel_id,)
            ).fetchone()
            added = old is None or old[0] == "removed"
            if not added:  # an update keeps who added it and when
                del fields["added_by"], fields["added_at"]
            updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
            self._conn.execute(
                f"INSERT INTO channels (id, {', '.join(fields)})"
                f" VALUES (?{', ?' * len(fields)}) ON CONFLICT (id) DO UPDATE SET {updates}",
                (channel_id, *fields.values()),
            )
            if old is None:
                self._conn.execute("INSERT INTO progress (channel_id) VALUES (?)", (channel_id,))
            if added:
                self._audit(channel_id, "add", by or fields["added_by"])
            return p.ChannelSaved(channel=self._channel(channel_id), created=old is None)

    def delete_channel(self, req: p.DeleteChannel) -> p.ChannelDeleted:
        _channel_id(req.channel_id)
        by = _name(req.by, "by", required=False)
        with self.atomic():
            state = self._conn.execute(
                "SELECT state FROM channels WHERE id = ?", (req.channel_id,)
            ).fetchone()
            if state is None or state[0] == "removed":
                return p.ChannelDeleted(channel_id=req.channel_id, existed=False)
            self._conn.execute(
                "UPDATE channels SET state = 'removed' WHERE id = ?", (req.channel_id,)
            )
            self._conn.execute("DELETE FROM subscriptions WHERE channel_id = ?", (req.channel_id,))
            self._audit(req.channel_id, "remove", by)
        return p.ChannelDeleted(channel_id=req.channel_id, existed=True)

    def get_channel(self, req: p.GetChannel) -> p.Channel:
        if req.channel_id:
            _channel_id(req.channel_id)
            return self._channel(req.channel_id)
        username = _username(req.username)
        if not username:
            raise Invalid("GetChannel needs channel_id or username")
        row = self._conn.execute(
            f"{_CHANNEL_SELECT} WHERE lower(c.username) = lower(?)"
            " ORDER BY c.state = 'removed', c.added_at DESC LIMIT 1",
            (username,),
        ).fetchone()
        if row is None:
            raise Missing(f"no channel @{username} in the store")
        return _channel(row)

    def list_channels(self, req: p.ListChannels) -> p.Channels:
        where, args = _where(
            {
                "c.state": req.state and _choice(req.state, "state", CHANNEL_STATES),
                "c.reader": req.reader and _name(req.reader, "reader"),
            },
            () if req.state else ("c.state != 'removed'",),
        )
        rows = self._conn.execute(f"{_CHANNEL_SELECT} WHERE {where} ORDER BY c.id", args)
        return p.Channels(channels=[_channel(row) for row in rows])

    def record_check(self, req: p.RecordCheck) -> p.Channel:
        _channel_id(req.channel_id)
        newest = _non_negative(req.newest_id, "newest_id")
        checked_at = _non_negative(req.checked_at, "checked_at") or self._now()
        with self.atomic():
            channel = self._channel(req.channel_id)
            newest = max(newest, channel.last_message_id)
            behind = newest > channel.last_message_id and channel.last_post_at > 0
            lag = max(0, checked_at - channel.last_post_at) if behind else 0
            self._conn.execute(
                "UPDATE progress SET last_check_at = ?, newest_id = ?, lag_s = ?"
                " WHERE channel_id = ?",
                (checked_at, newest, float(lag), req.channel_id),
            )
            self._conn.execute(
                "UPDATE channels SET error = ? WHERE id = ?", (_error(req.error), req.channel_id)
            )
            return self._channel(req.channel_id)

    # -- subscriptions --------------------------------------------------------------

    def subscribe(self, req: p.Subscribe) -> p.Subscribed:
        subscriber = _name(req.subscriber, "subscriber")
        _channel_id(req.channel_id)
        keywords = _keywords(req.keywords)
        with self.atomic():
            self._active_channel(req.channel_id)
            old = self._conn.execute(
                "SELECT created_at FROM subscriptions WHERE subscriber = ? AND channel_id = ?",
                (subscriber, req.channel_id),
            ).fetchone()
            created_at = old[0] if old else self._now()
            self._conn.execute(
                "INSERT INTO subscriptions (subscriber, channel_id, keywords, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (subscriber, channel_id)"
                " DO UPDATE SET keywords = excluded.keywords",
                (subscriber, req.channel_id, json.dumps(keywords), created_at),
            )
        subscription = p.Subscription(
            subscriber=subscriber,
            channel_id=req.channel_id,
            keywords=keywords,
            created_at=created_at,
        )
        return p.Subscribed(subscription=subscription, created=old is None)

    def unsubscribe(self, req: p.Unsubscribe) -> p.Unsubscribed:
        subscriber = _name(req.subscriber, "subscriber")
        _channel_id(req.channel_id)
        with self.atomic():
            done = self._conn.execute(
                "DELETE FROM subscriptions WHERE subscriber = ? AND channel_id = ?",
                (subscriber, req.channel_id),
            )
        return p.Unsubscribed(removed=done.rowcount > 0)

    def list_subscriptions(self, req: p.ListSubscriptions) -> p.Subscriptions:
        where, args = _where(
            {
                "subscriber": req.subscriber and _name(req.subscriber, "subscriber"),
                "channel_id": req.channel_id and _channel_id(req.channel_id),
            }
        )
        rows = self._conn.execute(
            "SELECT subscriber, channel_id, keywords, created_at FROM subscriptions"
            f" WHERE {where} ORDER BY subscriber, channel_id",
            args,
        )
        return p.Subscriptions(
            subscriptions=[
                p.Subscription(subscriber=s, channel_id=c, keywords=json.loads(k), created_at=t)
                for s, c, k, t in rows
            ]
        )

    # -- posts ----------------------------------------------------------------------

    def put_posts(self, req: p.PutPosts) -> p.PostsPut:
        _check_batch(req.channel_id, req.posts, "posts", _check_post)
        with self.atomic():
            last_message_id = self._last_message_id(req.channel_id)
            seq = self._last_seq()
            stored: list[p.Post] = []
            edited: list[p.Post] = []
            for post in req.posts:
                change = self._put_post(req.channel_id, post, seq + 1)
                if change is not None:
                    seq += 1
                    (stored if change.is_new else edited).append(change.post)
            if stored:
                last_message_id = max(last_message_id, *(x.message_id for x in stored))
                self._conn.execute(
                    "UPDATE progress SET posts = posts + ?, last_message_id = ?,"
                    " last_post_at = max(last_post_at, ?) WHERE channel_id = ?",
                    (len(stored), last_message_id, max(x.date for x in stored), req.channel_id),
                )
            self._set_last_seq(seq)
        return p.PostsPut(
            inserted=len(stored),
            updated=len(edited),
            last_seq=seq,
            last_message_id=last_message_id,
            stored=stored,
            edited=edited,
        )

    def _put_post(self, channel_id: int, post: p.PostData, seq: int) -> _Change | None:
        """Insert ``post``, or update it to a newer edit, under ``seq``; None if neither."""
        key = (channel_id, post.message_id)
        values = _post_values(post)
        inserted = self._conn.execute(
            "INSERT INTO posts (channel_id, message_id, seq, date, text, edit_date, media,"
            " views, forwards) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel_id, message_id) DO NOTHING",
            (*key, seq, *values),
        )
        if inserted.rowcount:
            self._index(inserted.lastrowid, post.text)
            return _Change(is_new=True, post=_as_post(channel_id, seq, post))
        rowid, old_text, edit_date, deleted = self._conn.execute(
            "SELECT id, text, edit_date, deleted FROM posts"
            " WHERE channel_id = ? AND message_id = ?",
            key,
        ).fetchone()
        if post.edit_date > edit_date and not deleted:
            self._conn.execute(
                "UPDATE posts SET seq = ?, date = ?, text = ?, edit_date = ?, media = ?,"
                " views = ?, forwards = ? WHERE id = ?",
                (seq, *values, rowid),
            )
            self._index(rowid, post.text, old_text)
            return _Change(is_new=False, post=_as_post(channel_id, seq, post))
        # Counters move without an edit: refreshed in place, no new seq.
        self._conn.execute(
            "UPDATE posts SET views = max(views, ?), forwards = max(forwards, ?)"
            " WHERE id = ? AND (views < ? OR forwards < ?)",
            (post.views, post.forwards, rowid, post.views, post.forwards),
        )
        return None

    def _index(self, rowid: int | None, text: str, old_text: str | None = None) -> None:
        """Queue a post's text for the full-text index, which is written at commit."""
        assert rowid is not None  # the row was just inserted or read
        self._unindexed.append((rowid, text, old_text))

    def _write_index(self) -> None:
        # FTS5 flushes its pending terms at every savepoint and trigger, which made a
        # write several times slower; queued and written together, a commit flushes once.
        for rowid, text, old_text in self._unindexed:
            if old_text is not None:
                self._conn.execute(
                    "INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', ?, ?)",
                    (rowid, old_text),
                )
            self._conn.execute("INSERT INTO posts_fts (rowid, text) VALUES (?, ?)", (rowid, text))
        self._unindexed.clear()

    def delete_posts(self, req: p.DeletePosts) -> p.PostsPut:
        _check_batch(req.channel_id, req.message_ids, "message_ids", _message_id)
        with self.atomic():
            last_message_id = self._last_message_id(req.channel_id)
            seq = self._last_seq()
            edited: list[p.Post] = []
            for message_id in dict.fromkeys(req.message_ids):
                row = self._conn.execute(
                    "UPDATE posts SET deleted = 1, seq = ?"
                    " WHERE channel_id = ? AND message_id = ? AND deleted = 0"
                    f" RETURNING {_POST_COLUMNS.replace('p.', '')}",
                    (seq + 1, req.channel_id, message_id),
                ).fetchone()
                if row is not None:
                    seq += 1
                    edited.append(_post(row))
            self._set_last_seq(seq)
        return p.PostsPut(
            updated=len(edited), last_seq=seq, last_message_id=last_message_id, edited=edited
        )

    def get_posts(self, req: p.GetPosts) -> p.Posts:
        _channel_id(req.channel_id)
        before = _non_negative(req.before_id, "before_id")
        limit = _limit(req.limit)
        self._known_channel(req.channel_id)
        rows = self._conn.execute(
            f"SELECT {_POST_COLUMNS} FROM posts p WHERE p.channel_id = ?"
            " AND (? = 0 OR p.message_id < ?) ORDER BY p.message_id DESC LIMIT ?",
            (req.channel_id, before, before, limit + 1),
        )
        return self._page(rows, limit)

    def search_posts(self, req: p.SearchPosts) -> p.Posts:
        query = _text(req.query, "query", MAX_QUERY).strip()
        if not query:
            raise Invalid("query is empty")
        limit = _limit(req.limit)
        args: list[Any] = [query]
        only = ""
        if req.channel_id:
            self._known_channel(_channel_id(req.channel_id))
            only = " AND p.channel_id = ?"
            args.append(req.channel_id)
        try:
            rows = self._conn.execute(
                f"SELECT {_POST_COLUMNS} FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid"
                f" WHERE posts_fts MATCH ? AND p.deleted = 0{only}"
                " ORDER BY p.date DESC, p.id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_query_error(exc):
                raise
            raise Invalid(f"bad search query: {exc}") from None
        return self._page(rows, limit)

    def posts_since(self, req: p.PostsSince) -> p.Posts:
        after = _non_negative(req.after_seq, "after_seq")
        limit = _limit(req.limit)
        _count(req.channel_ids, "channel_ids", MAX_CHANNEL_FILTER)
        for channel_id in req.channel_ids:
            _channel_id(channel_id)
        only = ""
        if req.channel_ids:
            only = f" AND p.channel_id IN ({', '.join('?' * len(req.channel_ids))})"
        rows = self._conn.execute(
            f"SELECT {_POST_COLUMNS} FROM posts p WHERE p.seq > ?{only} ORDER BY p.seq LIMIT ?",
            (after, *req.channel_ids, limit + 1),
        )
        return self._page(rows, limit)

    # -- cursors and deliveries -----------------------------------------------------------

    def get_cursor(self, req: p.GetCursor) -> p.Cursor:
        name = _name(req.name, "name")
        row = self._conn.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return p.Cursor(name=name, seq=row[0] if row else 0)

    def save_cursor(self, req: p.SaveCursor) -> p.Cursor:
        name = _name(req.name, "name")
        seq = _non_negative(req.seq, "seq")
        with self.atomic():
            last = self._last_seq()
            if seq > last:
                raise Invalid(f"seq {seq} is beyond the store's last seq {last}")
            (saved,) = self._conn.execute(
                "INSERT INTO cursors (name, seq, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = max(seq, excluded.seq),"
                " updated_at = excluded.updated_at RETURNING seq",
                (name, seq, self._clock()),
            ).fetchone()
        return p.Cursor(name=name, seq=saved)

    def record_delivery(self, req: p.RecordDelivery) -> p.DeliveryRecorded:
        d = req.delivery
        subscriber = _name(d.subscriber, "subscriber")
        key = (subscriber, _channel_id(d.channel_id), _message_id(d.message_id))
        seq = _non_negative(d.seq, "seq")
        status = _choice(d.status, "status", DELIVERY_STATES)
        sent_message_id = _non_negative(d.sent_message_id, "sent_message_id")
        with self.atomic():
            post = self._conn.execute(
                "SELECT seq FROM posts WHERE channel_id = ? AND message_id = ?", key[1:]
            ).fetchone()
            if post is None:
                raise Missing(f"no post {d.message_id} of channel {d.channel_id} in the store")
            old = self._delivery(key)
            if old is not None and old.status in p.FINAL_DELIVERY:
                return p.DeliveryRecorded(delivery=old, created=False)
            self._conn.execute(
                f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (subscriber, channel_id, message_id) DO UPDATE SET"
                " seq = excluded.seq, status = excluded.status,"
                " sent_message_id = excluded.sent_message_id, error = excluded.error,"
                " attempts = attempts + 1, updated_at = excluded.updated_at",
                (*key, seq or post[0], status, sent_message_id, _error(d.error), self._now()),
            )
            saved = self._delivery(key)
        assert saved is not None  # written just above, in this transaction
        return p.DeliveryRecorded(delivery=saved, created=old is None)

    def get_deliveries(self, req: p.GetDeliveries) -> p.Deliveries:
        after = _non_negative(req.after_seq, "after_seq")
        where, args = _where(
            {
                "subscriber": req.subscriber and _name(req.subscriber, "subscriber"),
                "channel_id": req.channel_id and _channel_id(req.channel_id),
                "message_id": req.message_id and _message_id(req.message_id),
                "status": req.status and _choice(req.status, "status", DELIVERY_STATES),
            }
        )
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {where} AND seq > ?"
            " ORDER BY seq, subscriber, channel_id, message_id LIMIT ?",
            (*args, after, _limit(req.limit)),
        )
        return p.Deliveries(deliveries=[_delivery(row) for row in rows])

    # -- status ---------------------------------------------------------------------

    def stats(self, req: p.GetStoreStats) -> p.StoreStats:
        one = self._one
        per_channel = [
            p.ChannelStats(channel_id=c, posts=n, last_message_id=m, last_post_at=t, lag_s=lag)
            for c, n, m, t, lag in self._conn.execute(
                "SELECT g.channel_id, g.posts, g.last_message_id, g.last_post_at, g.lag_s"
                " FROM progress g JOIN channels c ON c.id = g.channel_id"
                " WHERE c.state != 'removed' ORDER BY g.channel_id"
            )
        ]
        return p.StoreStats(
            channels=one("SELECT count(*) FROM channels WHERE state != 'removed'"),
            subscriptions=one("SELECT count(*) FROM subscriptions"),
            posts=one("SELECT coalesce(sum(posts), 0) FROM progress"),
            last_seq=self._last_seq(),
            db_bytes=one("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"),
            schema_version=schema_version(self._conn),
            per_channel=per_channel,
            commits=self.commits,
        )

    # -- helpers ------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _one(self, sql: str, args: Iterable[Any] = ()) -> int:
        return int(self._conn.execute(sql, tuple(args)).fetchone()[0])

    def _last_seq(self) -> int:
        return self._one("SELECT value FROM sequence WHERE id = 1")

    def _set_last_seq(self, seq: int) -> None:
        self._conn.execute("UPDATE sequence SET value = ? WHERE id = 1", (seq,))

    def _audit(self, channel_id: int, action: str, by: str) -> None:
        self._conn.execute(
            "INSERT INTO channel_audit (channel_id, action, by, at) VALUES (?, ?, ?, ?)",
            (channel_id, action, by, self._clock()),
        )

    def _channel(self, channel_id: int) -> p.Channel:
        row = self._conn.execute(f"{_CHANNEL_SELECT} WHERE c.id = ?", (channel_id,)).fetchone()
        if row is None:
            raise Missing(f"no channel {channel_id} in the store")
        return _channel(row)

    def _last_message_id(self, channel_id: int) -> int:
        """The channel's newest stored message id; raises Missing for an unknown channel."""
        row = self._conn.execute(
            "SELECT last_message_id FROM progress WHERE channel_id = ?", (channel_id,)
        ).fetchone()
        if row is None:
            raise Missing(f"no channel {channel_id} in the store")
        return int(row[0])

    def _known_channel(self, channel_id: int) -> None:
        if self._conn.execute("SELECT 1 FROM channels WHERE id = ?", (channel_id,)).fetchone():
            return
        raise Missing(f"no channel {channel_id} in the store")

    def _active_channel(self, channel_id: int) -> None:
        if self._channel(channel_id).state == "removed":
            raise Missing(f"channel {channel_id} was removed")

    def _delivery(self, key: tuple[str, int, int]) -> p.Delivery | None:
        row = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
            " WHERE subscriber = ? AND channel_id = ? AND message_id = ?",
            key,
        ).fetchone()
        return None if row is None else _delivery(row)

    def _page(self, rows: Iterable[tuple[Any, ...]], limit: int) -> p.Posts:
        """Up to ``limit`` posts of ``rows`` (fetched with one more, to tell ``more``),
        fewer when their text reaches ``PAGE_BYTES``, never none while rows remain."""
        posts: list[p.Post] = []
        size = 0
        for row in rows:
            post = _post(row)
            size += len(post.text.encode())
            if len(posts) == limit or (posts and size > p.PAGE_BYTES):
                return p.Posts(posts=posts, last_seq=self._last_seq(), more=True)
            posts.append(post)
        return p.Posts(posts=posts, last_seq=self._last_seq())


def _where(equal: dict[str, Any], also: Iterable[str] = ()) -> tuple[str, list[Any]]:
    """A WHERE condition: ``column = ?`` for each column whose value is set (truthy),
    and the conditions ``also``; ``1`` when there are none. Returns it and its arguments."""
    conditions = [f"{column} = ?" for column, value in equal.items() if value]
    return " AND ".join([*conditions, *also]) or "1", [v for v in equal.values() if v]


# -- rows to Structs ----------------------------------------------------------------------


def _channel(row: tuple[Any, ...]) -> p.Channel:
    (id_, username, title, link, reader, state, by, at, error, last_id, last_at, check, lag) = row
    return p.Channel(
        id=id_,
        username=username,
        title=title,
        invite_link=link,
        reader=reader,
        state=state,
        added_by=by,
        added_at=at,
        last_message_id=last_id,
        last_post_at=last_at,
        last_check_at=check,
        lag_s=lag,
        error=error,
    )


def _post(row: tuple[Any, ...]) -> p.Post:
    seq, channel_id, message_id, date, text, edit_date, media, views, forwards, deleted = row
    return p.Post(
        seq=seq,
        channel_id=channel_id,
        message_id=message_id,
        date=date,
        text=text,
        edit_date=edit_date,
        media=media,
        views=views,
        forwards=forwards,
        deleted=bool(deleted),
    )


def _as_post(channel_id: int, seq: int, post: p.PostData) -> p.Post:
    return _post((seq, channel_id, post.message_id, *_post_values(post), False))


def _post_values(post: p.PostData) -> tuple[Any, ...]:
    """The columns ``date, text, edit_date, media, views, forwards`` of a post."""
    return (post.date, post.text, post.edit_date, post.media, post.views, post.forwards)


def _delivery(row: tuple[Any, ...]) -> p.Delivery:
    subscriber, channel_id, message_id, seq, status, sent, error, attempts, at = row
    return p.Delivery(
        subscriber=subscriber,
        channel_id=channel_id,
        message_id=message_id,
        seq=seq,
        status=status,
        sent_message_id=sent,
        error=error,
        attempts=attempts,
        updated_at=at,
    )


# -- input checks (each raises Invalid naming the field) --------------------------------


def _channel_fields(c: p.Channel) -> dict[str, Any]:
    """The channel's own columns, checked (a removed state is refused: DeleteChannel)."""
    if c.state == "removed":
        raise Invalid("a channel is removed with DeleteChannel, not saved as removed")
    return {
        "username": _username(c.username),
        "title": _text(c.title, "title", MAX_TITLE),
        "invite_link": _text(c.invite_link, "invite_link", MAX_LINK),
        "reader": _name(c.reader, "reader", required=False),
        "state": _choice(c.state, "state", CHANNEL_STATES),
        "error": _error(c.error),
        "added_by": _name(c.added_by, "added_by", required=False),
        "added_at": _non_negative(c.added_at, "added_at"),
    }


def _int(value: object, what: str, low: int, high: int = INT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Invalid(f"{what} must be an integer in [{low}, {high}], not {value!r:.40}")
    return value


def _non_negative(value: object, what: str) -> int:
    return _int(value, what, 0)


def _message_id(value: object) -> int:
    return _int(value, "message_id", 1)


def _channel_id(value: object) -> int:
    if type(value) is not int or value == 0 or not -INT64_MAX <= value <= INT64_MAX:
        raise Invalid(f"channel id must be a non-zero 64-bit integer, not {value!r:.40}")
    return value


def _limit(value: object) -> int:
    return _int(value, "limit", 1, p.MAX_PAGE)


def _count(items: list[Any], what: str, most: int) -> None:
    if len(items) > most:
        raise Invalid(f"{what} has {len(items)} items, at most {most} are allowed")


def _check_batch(
    channel_id: object, items: list[Any], what: str, check: Callable[[Any], object]
) -> None:
    """A write of up to ``MAX_BATCH`` items of one channel, each passing ``check``."""
    _channel_id(channel_id)
    _count(items, what, p.MAX_BATCH)
    for item in items:
        check(item)


def _text(value: object, what: str, most: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string")
    if len(value) > most:
        raise Invalid(f"{what} is {len(value)} characters long, at most {most} are allowed")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"{what} is not valid Unicode text") from None
    return value


def _name(value: object, what: str, *, required: bool = True) -> str:
    name = _text(value, what, MAX_NAME)
    if required and not name:
        raise Invalid(f"{what} is empty")
    if not name.isprintable():
        raise Invalid(f"{what} has control characters")
    return name


def _username(value: object) -> str:
    name = _text(value, "username", 64).removeprefix("@")
    if name and not (name.replace("_", "").isalnum() and name.isascii()):
        raise Invalid(f"username {name!r:.70} has characters other than letters, digits and _")
    return name


def _choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid(f"{what} must be one of {', '.join(allowed)}, not {value!r:.40}")
    return str(value)


def _error(value: object) -> str:
    return _text(value, "error", 1_000_000)[:MAX_ERROR]


def _keywords(values: list[Any]) -> list[str]:
    _count(values, "keywords", MAX_KEYWORDS)
    keywords = [_text(k, "keyword", MAX_KEYWORD).strip() for k in values]
    if not all(keywords):
        raise Invalid("a keyword is empty")
    return list(dict.fromkeys(keywords))


def _check_post(post: p.PostData) -> None:
    _message_id(post.message_id)
    for what in ("date", "edit_date", "views", "forwards"):
        _non_negative(getattr(post, what), what)
    _text(post.text, "text", p.MAX_TEXT)
    media = _text(post.media, "media", MAX_MEDIA)
    if media and not (media.isascii() and media.replace("_", "").isalpha() and media.islower()):
        raise Invalid(f"media must be a lower-case word, not {media!r}")
    if not post.text and not media:
        raise Invalid(f"post {post.message_id} has neither text nor media")


def _is_query_error(exc: sqlite3.OperationalError) -> bool:
    """True unless the error is the database's own (locked, I/O, full, interrupted): the
    MATCH expression is the only caller-given part of a search that SQLite parses."""
    text = str(exc).lower()
    return not any(word in text for word in ("locked", "i/o", "disk", "full", "interrupt"))
