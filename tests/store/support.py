"""Building blocks of the store tests: a seeded store, posts, and a dump to compare."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from actors.storage import Store
from protocols import store as p

CHANNEL = -1001234567890
OTHER = -1009876543210


def post(message_id: int, text: str = "", **fields: object) -> p.PostData:
    """A post of ``message_id`` dated ``1000 + message_id`` (text defaults to one naming it)."""
    return p.PostData(
        message_id=message_id,
        date=1000 + message_id,
        text=text or f"post number {message_id}",
        **fields,  # type: ignore[arg-type]
    )


def seed(store: Store) -> None:
    """Two channels, a subscription, three posts of ``CHANNEL``, a cursor, a delivery."""
    store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL, username="news"), by="test"))
    store.save_channel(p.SaveChannel(channel=p.Channel(id=OTHER, username="other"), by="test"))
    store.subscribe(p.Subscribe(subscriber="bot:b:1", channel_id=CHANNEL))
    store.put_posts(p.PutPosts(channel_id=CHANNEL, posts=[post(1), post(2), post(3)]))
    store.save_cursor(p.SaveCursor(name="consumer", seq=2))
    store.record_delivery(
        p.RecordDelivery(
            delivery=p.Delivery(subscriber="bot:b:1", channel_id=CHANNEL, message_id=1)
        )
    )


def dump(path: Path) -> list[str]:
    """Every row of every table of the database at ``path``, read over its own connection."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return list(conn.iterdump())
