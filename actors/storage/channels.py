"""Watched channels and their subscriptions: saving, removing, listing, checking.

A channel is never deleted: :meth:`~ChannelQueries.delete_channel` marks it ``removed``
(and drops its subscriptions), so its posts and deliveries keep their channel; saving it
again brings it back. Each channel has one ``progress`` row (newest message, last post,
last check, lag), and every add and removal is written to ``channel_audit`` with who did
it. A subscription needs an active channel and is unique per (subscriber, channel).
"""

from __future__ import annotations

import json
from typing import Any

from actors.storage import checks as check
from actors.storage.checks import CHANNEL_STATES, MAX_LINK, MAX_TITLE, Invalid, Missing
from actors.storage.database import Database, encoded_size, page, where_clause
from protocols import store as p

__all__ = ["ChannelQueries"]

_CHANNEL_COLUMNS = (
    "c.id, c.username, c.title, c.invite_link, c.reader, c.state, c.added_by, c.added_at,"
    " c.error, g.last_message_id, g.last_post_at, g.last_check_at, g.lag_s"
)
_CHANNEL_SELECT = (
    f"SELECT {_CHANNEL_COLUMNS} FROM channels c JOIN progress g ON g.channel_id = c.id"
)


class ChannelQueries(Database):
    """The channel and subscription requests of :class:`~actors.storage.Store`."""

    # -- channels -----------------------------------------------------------------

    def save_channel(self, req: p.SaveChannel) -> p.ChannelSaved:
        channel_id = check.channel_id(req.channel.id)
        fields = _channel_fields(req.channel)
        by = check.name(req.by, "by", required=False)
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
        check.channel_id(req.channel_id)
        by = check.name(req.by, "by", required=False)
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
            check.channel_id(req.channel_id)
            return self._channel(req.channel_id)
        username = check.username(req.username)
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
        after = check.after_id(req.after_id, "after_id")
        limit = check.limit(req.limit)
        where, args = where_clause(
            {
                "c.state": req.state and check.choice(req.state, "state", CHANNEL_STATES),
                "c.reader": req.reader and check.name(req.reader, "reader"),
            },
            () if req.state else ("c.state != 'removed'",),
        )
        rows = self._conn.execute(
            f"{_CHANNEL_SELECT} WHERE {where} AND (? = 0 OR c.id > ?) ORDER BY c.id LIMIT ?",
            (*args, after, after, limit + 1),
        )
        channels, more = page(map(_channel, rows), limit, encoded_size)
        return p.Channels(channels=channels, more=more)

    def record_check(self, req: p.RecordCheck) -> p.Channel:
        check.channel_id(req.channel_id)
        newest = check.non_negative(req.newest_id, "newest_id")
        checked_at = check.non_negative(req.checked_at, "checked_at") or self._now()
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
                "UPDATE channels SET error = ? WHERE id = ?",
                (check.error(req.error), req.channel_id),
            )
            return self._channel(req.channel_id)

    # -- subscriptions --------------------------------------------------------------

    def subscribe(self, req: p.Subscribe) -> p.Subscribed:
        subscriber = check.name(req.subscriber, "subscriber")
        check.channel_id(req.channel_id)
        keywords = check.keywords(req.keywords)
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
        subscriber = check.name(req.subscriber, "subscriber")
        check.channel_id(req.channel_id)
        with self.atomic():
            done = self._conn.execute(
                "DELETE FROM subscriptions WHERE subscriber = ? AND channel_id = ?",
                (subscriber, req.channel_id),
            )
        return p.Unsubscribed(removed=done.rowcount > 0)

    def list_subscriptions(self, req: p.ListSubscriptions) -> p.Subscriptions:
        # A subscriber is never empty, so the key ("", 0) is before every subscription.
        after_subscriber = check.name(req.after_subscriber, "after_subscriber", required=False)
        after_channel = check.after_id(req.after_channel_id, "after_channel_id")
        if after_channel and not after_subscriber:
            after_subscriber = req.subscriber
        after = (after_subscriber, after_channel)
        limit = check.limit(req.limit)
        where, args = where_clause(
            {
                "subscriber": req.subscriber and check.name(req.subscriber, "subscriber"),
                "channel_id": req.channel_id and check.channel_id(req.channel_id),
            }
        )
        rows = self._conn.execute(
            "SELECT subscriber, channel_id, keywords, created_at FROM subscriptions"
            f" WHERE {where} AND (subscriber, channel_id) > (?, ?)"
            " ORDER BY subscriber, channel_id LIMIT ?",
            (*args, *after, limit + 1),
        )
        subscriptions, more = page(
            (
                p.Subscription(subscriber=s, channel_id=c, keywords=json.loads(k), created_at=t)
                for s, c, k, t in rows
            ),
            limit,
            encoded_size,
        )
        return p.Subscriptions(subscriptions=subscriptions, more=more)

    # -- helpers ------------------------------------------------------------------------

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

    def _active_channel(self, channel_id: int) -> None:
        if self._channel(channel_id).state == "removed":
            raise Missing(f"channel {channel_id} was removed")


def _channel(row: tuple[Any, ...]) -> p.Channel:
    (id_, username, title, link, reader, state, by, at, error, last_id, last_at, checked, lag) = row
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
        last_check_at=checked,
        lag_s=lag,
        error=error,
    )


def _channel_fields(c: p.Channel) -> dict[str, Any]:
    """The channel's own columns, checked (a removed state is refused: DeleteChannel)."""
    if c.state == "removed":
        raise Invalid("a channel is removed with DeleteChannel, not saved as removed")
    return {
        "username": check.username(c.username),
        "title": check.text(c.title, "title", MAX_TITLE),
        "invite_link": check.text(c.invite_link, "invite_link", MAX_LINK),
        "reader": check.name(c.reader, "reader", required=False),
        "state": check.choice(c.state, "state", CHANNEL_STATES),
        "error": check.error(c.error),
        "added_by": check.name(c.added_by, "added_by", required=False),
        "added_at": check.non_negative(c.added_at, "added_at"),
    }
