"""Events published on the bus (PUB/SUB through the broker), by topic.

A subscriber receives every event whose topic starts with a prefix it subscribed to.
Events are at most once and only to current subscribers; state that must survive lives
in actors and stores, not on the bus.

Topics: ``actor.<address>`` for :class:`ActorStateChanged`.
"""

from __future__ import annotations

from protocols.base import Message


class ActorStateChanged(Message):
    """A supervised actor changed state (running, restarting, failed, stopped)."""

    address: str
    state: str
    restarts: int = 0
    reason: str = ""


MESSAGES: tuple[type[Message], ...] = (ActorStateChanged,)
