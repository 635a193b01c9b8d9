"""Posts: idempotent writes on ``(channel_id, message_id)``, pages, full-text search.

A write that changes a post (new, edited to a newer ``edit_date``, deleted) gives it the
next number of the store-wide ``seq``, so :meth:`~PostQueries.posts_since` returns what
changed after a given ``seq``, oldest change first. A repeated post changes nothing (only
its counters may grow, without a new ``seq``); a deleted post is kept, marked ``deleted``.
A page holds at most ``limit`` posts, fewer once their text passes ``PAGE_BYTES``, and
never none while posts remain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actors.storage import checks as check
from actors.storage.checks import MAX_CHANNEL_FILTER, MAX_QUERY, Invalid, Missing
from actors.storage.database import Database, page
from protocols import store as p

__all__ = ["PostQueries"]

_POST_COLUMNS = (
    "p.seq, p.channel_id, p.message_id, p.date, p.text, p.edit_date, p.media, p.views,"
    " p.forwards, p.deleted"
)


@dataclass(frozen=True)
class _Change:
    """A post a write changed: new (``is_new``) or edited, as stored."""

    is_new: bool
    post: p.Post


class PostQueries(Database):
    """The post requests of :class:`~actors.storage.Store`."""

    def put_posts(self, req: p.PutPosts) -> p.PostsPut:
        check.batch(req.channel_id, req.posts, "posts", check.post)
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

    def delete_posts(self, req: p.DeletePosts) -> p.PostsPut:
        check.batch(req.channel_id, req.message_ids, "message_ids", check.message_id)
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
        check.channel_id(req.channel_id)
        before = check.non_negative(req.before_id, "before_id")
        limit = check.limit(req.limit)
        self._known_channel(req.channel_id)
        rows = self._conn.execute(
            f"SELECT {_POST_COLUMNS} FROM posts p WHERE p.channel_id = ?"
            " AND (? = 0 OR p.message_id < ?) ORDER BY p.message_id DESC LIMIT ?",
            (req.channel_id, before, before, limit + 1),
        )
        return self._page(rows, limit)

    def search_posts(self, req: p.SearchPosts) -> p.Posts:
        query = check.text(req.query, "query", MAX_QUERY).strip()
        if not query:
            raise Invalid("query is empty")
        limit = check.limit(req.limit)
        args: list[Any] = [query]
        only = ""
        if req.channel_id:
            self._known_channel(check.channel_id(req.channel_id))
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
        after = check.non_negative(req.after_seq, "after_seq")
        limit = check.limit(req.limit)
        check.count(req.channel_ids, "channel_ids", MAX_CHANNEL_FILTER)
        for channel_id in req.channel_ids:
            check.channel_id(channel_id)
        only = ""
        if req.channel_ids:
            only = f" AND p.channel_id IN ({', '.join('?' * len(req.channel_ids))})"
        rows = self._conn.execute(
            f"SELECT {_POST_COLUMNS} FROM posts p WHERE p.seq > ?{only} ORDER BY p.seq LIMIT ?",
            (after, *req.channel_ids, limit + 1),
        )
        return self._page(rows, limit)

    # -- helpers ------------------------------------------------------------------------

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

    def _page(self, rows: Iterable[tuple[Any, ...]], limit: int) -> p.Posts:
        """Up to ``limit`` posts of ``rows`` (fetched with one more, to tell ``more``),
        fewer when their text reaches ``PAGE_BYTES``, never none while rows remain."""
        posts, more = page(map(_post, rows), limit, lambda post: len(post.text.encode()))
        return p.Posts(posts=posts, last_seq=self._last_seq(), more=more)


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


def _is_query_error(exc: sqlite3.OperationalError) -> bool:
    """True unless the error is the database's own (locked, I/O, full, interrupted): the
    MATCH expression is the only caller-given part of a search that SQLite parses."""
    text = str(exc).lower()
    return not any(word in text for word in ("locked", "i/o", "disk", "full", "interrupt"))
