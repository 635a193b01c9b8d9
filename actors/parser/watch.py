"""A watched channel as the parser holds it: the store's record, the queue of live events
not yet written, and the reconciler's schedule for it.

Only the actor's loop touches a :class:`Watch`; its ``lock`` orders the writes of one
channel (live events, backfill, catch-up) so they reach the store one after another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from protocols import store as st
from protocols.session import ChatMessage

__all__ = ["Watch"]


@dataclass
class Watch:
    """A watched channel: the store's record, and the reconciler's view of it."""

    channel: st.Channel
    period: float
    next_check: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: list[tuple[str, ChatMessage | list[int]]] = field(default_factory=list)
    draining: bool = False
    checking: bool = False
    live: bool = False  # a live post arrived since the last check
    resync_from: int = -1  # a failed write: catch up from here (below the newest stored)
    error: str = ""
    newest_seen: int = 0
    recorded_at: float = 0.0  # when the store last heard of a check (monotonic)

    @property
    def id(self) -> int:
        return self.channel.id

    def since(self) -> int:
        last = self.channel.last_message_id
        return last if self.resync_from < 0 else min(last, self.resync_from)
