"""Telegram's sending limits for bots, kept by spacing sends instead of bursting.

:class:`Pace` is a pure policy on an injected clock: it says when the next message to a
chat may go, given about 30 messages/s overall, 1/s per private chat and 20/minute per
group or channel (all configurable), and a chat's own flood wait. Sends are spaced
evenly, never in bursts, so a sender that follows it stays inside Telegram's buckets
whatever their burst size. A flood wait delays its chat only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from config import DeliverySettings

__all__ = ["Pace"]


class Pace:
    """When each chat may get its next message. Not thread-safe: one owner (the loop)."""

    def __init__(
        self, settings: DeliverySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._overall = 1.0 / settings.overall_per_s
        self._private = 1.0 / settings.private_per_s
        self._group = 60.0 / settings.group_per_min
        self._clock = clock
        self._next_overall = 0.0
        self._next_chat: dict[int, float] = {}
        self._blocked: dict[int, float] = {}

    @property
    def limit_per_s(self) -> float:
        """The overall rate, messages per second."""
        return 1.0 / self._overall

    def interval(self, chat_id: int) -> float:
        """Seconds between two messages to ``chat_id`` (private chats have positive ids)."""
        return self._private if chat_id > 0 else self._group

    def ready_at(self, chat_id: int) -> float:
        """The clock time from which a message to ``chat_id`` may go."""
        return max(
            self._next_overall,
            self._next_chat.get(chat_id, 0.0),
            self._blocked.get(chat_id, 0.0),
        )

    def chat_ready_at(self, chat_id: int) -> float:
        """As :meth:`ready_at`, ignoring the overall spacing (to pick the next chat)."""
        return max(self._next_chat.get(chat_id, 0.0), self._blocked.get(chat_id, 0.0))

    def took(self, chat_id: int) -> None:
        """A message to ``chat_id`` goes now: space the next ones."""
        now = self._clock()
        self._next_overall = max(self._next_overall, now) + self._overall
        self._next_chat[chat_id] = now + self.interval(chat_id)

    def flood_waited(self, chat_id: int, seconds: float) -> None:
        """Telegram asked to wait ``seconds`` before the next message to ``chat_id``."""
        until = self._clock() + seconds
        self._blocked[chat_id] = max(until, self._blocked.get(chat_id, 0.0))

    def waiting(self) -> dict[int, float]:
        """Chats under a flood wait, with the seconds left."""
        now = self._clock()
        return {chat: until - now for chat, until in self._blocked.items() if until > now}
