"""Delivery bookkeeping: named cursors over ``seq``, and one record per post delivered.

A cursor only moves forward (saving a lower ``seq`` keeps the higher one) and never past
the store's last ``seq``. A delivery is keyed on (subscriber, channel, message): recording
it again counts an attempt and updates it, until it reaches a final status
(``FINAL_DELIVERY``), after which it is never changed, but for a ``sent`` copy becoming
``deleted`` once.
"""

from __future__ import annotations

from typing import Any

from actors.storage import checks as check
from actors.storage.checks import DELIVERY_STATES, Invalid, Missing
from actors.storage.database import Database, where_clause
from protocols import store as p

__all__ = ["DeliveryQueries"]

_DELIVERY_COLUMNS = (
    "subscriber, channel_id, message_id, seq, status, sent_message_id, error, attempts, updated_at"
)


class DeliveryQueries(Database):
    """The cursor and delivery requests of :class:`~actors.storage.Store`."""

    def get_cursor(self, req: p.GetCursor) -> p.Cursor:
        name = check.name(req.name, "name")
        row = self._conn.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return p.Cursor(name=name, seq=row[0] if row else 0)

    def save_cursor(self, req: p.SaveCursor) -> p.Cursor:
        name = check.name(req.name, "name")
        seq = check.non_negative(req.seq, "seq")
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
        subscriber = check.name(d.subscriber, "subscriber")
        key = (subscriber, check.channel_id(d.channel_id), check.message_id(d.message_id))
        seq = check.non_negative(d.seq, "seq")
        status = check.choice(d.status, "status", DELIVERY_STATES)
        sent_message_id = check.non_negative(d.sent_message_id, "sent_message_id")
        with self.atomic():
            post = self._conn.execute(
                "SELECT seq FROM posts WHERE channel_id = ? AND message_id = ?", key[1:]
            ).fetchone()
            if post is None:
                raise Missing(f"no post {d.message_id} of channel {d.channel_id} in the store")
            old = self._delivery(key)
            undone = old is not None and old.status == "sent" and status == "deleted"
            if old is not None and old.status in p.FINAL_DELIVERY and not undone:
                return p.DeliveryRecorded(delivery=old, created=False)
            if status == "deleted":
                if old is None or not undone:
                    raise Invalid(f"only a sent delivery can become deleted: {key}")
                sent_message_id = sent_message_id or old.sent_message_id
            self._conn.execute(
                f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (subscriber, channel_id, message_id) DO UPDATE SET"
                " seq = excluded.seq, status = excluded.status,"
                " sent_message_id = excluded.sent_message_id, error = excluded.error,"
                " attempts = attempts + 1, updated_at = excluded.updated_at",
                (*key, seq or post[0], status, sent_message_id, check.error(d.error), self._now()),
            )
            saved = self._delivery(key)
        assert saved is not None  # written just above, in this transaction
        return p.DeliveryRecorded(delivery=saved, created=old is None)

    def get_deliveries(self, req: p.GetDeliveries) -> p.Deliveries:
        after = check.non_negative(req.after_seq, "after_seq")
        where, args = where_clause(
            {
                "subscriber": req.subscriber and check.name(req.subscriber, "subscriber"),
                "channel_id": req.channel_id and check.channel_id(req.channel_id),
                "message_id": req.message_id and check.message_id(req.message_id),
                "status": req.status and check.choice(req.status, "status", DELIVERY_STATES),
            }
        )
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {where} AND seq > ?"
            " ORDER BY seq, subscriber, channel_id, message_id LIMIT ?",
            (*args, after, check.limit(req.limit)),
        )
        return p.Deliveries(deliveries=[_delivery(row) for row in rows])

    def _delivery(self, key: tuple[str, int, int]) -> p.Delivery | None:
        row = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
            " WHERE subscriber = ? AND channel_id = ? AND message_id = ?",
            key,
        ).fetchone()
        return None if row is None else _delivery(row)


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
