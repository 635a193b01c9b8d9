"""The :class:`Store`: every request of :mod:`protocols.store` as one method, and the
store's statistics.

The methods live with their concept (:mod:`.channels`, :mod:`.posts`, :mod:`.delivery`);
this class joins them over one :class:`~actors.storage.database.Database`.
"""

from __future__ import annotations

from actors.storage import checks as check
from actors.storage.channels import ChannelQueries
from actors.storage.database import encoded_size, page
from actors.storage.delivery import DeliveryQueries
from actors.storage.migrations import schema_version
from actors.storage.posts import PostQueries
from protocols import store as p

__all__ = ["Store"]


class Store(ChannelQueries, PostQueries, DeliveryQueries):
    """The application database in one SQLite file (or ``":memory:"``).

    Each public method takes one request of :mod:`protocols.store` and returns its reply,
    or raises :class:`~actors.storage.StoreError` (nothing written). Opening creates the
    file (and its directory) if needed, sets WAL mode and applies the pending migrations.
    Raises ``sqlite3.Error`` if the file cannot be opened and
    :class:`~actors.storage.migrations.SchemaTooNew` if a newer version migrated it.
    """

    def stats(self, req: p.GetStoreStats) -> p.StoreStats:
        after = check.after_id(req.after_id, "after_id")
        limit = check.limit(req.limit)
        one = self._one
        per_channel, more = page(
            (
                p.ChannelStats(channel_id=c, posts=n, last_message_id=m, last_post_at=t, lag_s=lag)
                for c, n, m, t, lag in self._conn.execute(
                    "SELECT g.channel_id, g.posts, g.last_message_id, g.last_post_at, g.lag_s"
                    " FROM progress g JOIN channels c ON c.id = g.channel_id"
                    " WHERE c.state != 'removed' AND (? = 0 OR g.channel_id > ?)"
                    " ORDER BY g.channel_id LIMIT ?",
                    (after, after, limit + 1),
                )
            ),
            limit,
            encoded_size,
        )
        return p.StoreStats(
            channels=one("SELECT count(*) FROM channels WHERE state != 'removed'"),
            subscriptions=one("SELECT count(*) FROM subscriptions"),
            posts=one("SELECT coalesce(sum(posts), 0) FROM progress"),
            last_seq=self._last_seq(),
            db_bytes=one("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"),
            schema_version=schema_version(self._conn),
            per_channel=per_channel,
            commits=self.commits,
            more=more,
        )
