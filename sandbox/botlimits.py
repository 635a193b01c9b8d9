"""Telegram's sending limits for bots, enforced the way the server does: with FLOOD_WAIT.

Three token buckets guard every ``messages.sendMessage`` of a bot: one for the bot overall
(about 30 messages/s), one per private chat (about 1/s, with a small burst) and one per
channel (about 20/minute). A bucket holds at most ``burst`` tokens and refills at ``rate``
tokens per second; a send takes one token from the bot's bucket and one from the chat's.
So in any window of T seconds at most ``burst + rate * T`` sends of one bot (or to one
chat) are accepted. A send that finds a bucket empty is refused with
``420 FLOOD_WAIT_<X>``, X the whole seconds until both buckets allow it (at least 1), and
takes nothing. Accepted sends are recorded per (bot, chat) with their unix time, so a test
can prove its sender stayed inside the limits: :meth:`BotLimiter.report`.

Only sends through MTProto are limited; the control API acts as the test harness and is
never refused.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sandbox.backend import RpcError

ChatKind = Literal["private", "channel"]

#: Accepted send times kept per (bot, chat); older ones are counted, not listed.
SEND_TIMES_KEPT = 10_000


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: ``rate`` tokens per second, at most ``burst`` held."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate must be > 0 and its burst >= 1")


@dataclass
class _Bucket:
    tokens: float
    stamp: float

    def wait(self, rate: Rate, now: float) -> float:
        """Refill up to ``now``; seconds until one token is there (0.0 if one is)."""
        self.tokens = min(rate.burst, self.tokens + (now - self.stamp) * rate.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / rate.rate


@dataclass
class ChatLog:
    """What one bot sent to one chat: accepted send times (unix), and refusals."""

    kind: ChatKind
    sent: int = 0
    refused: int = 0
    times: deque[float] = field(default_factory=lambda: deque(maxlen=SEND_TIMES_KEPT))


class BotLimiter:
    """The buckets and send logs of every bot. Use from the world's event loop only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._bots: dict[int, _Bucket] = {}
        self._chats: dict[tuple[int, int], _Bucket] = {}
        self.logs: dict[tuple[int, int], ChatLog] = {}

    def admit(
        self,
        bot_id: int,
        chat_id: int,
        kind: ChatKind,
        limits: tuple[Rate, Rate] | None,
        forced_wait: float = 0.0,
    ) -> None:
        """Take a token from the bot's and the chat's bucket and log the send.

        ``limits`` is ``(overall, per_chat)``, or None for no limits (the send is only
        logged). ``forced_wait`` is a flood wait injected for this chat (seconds left).
        Raises RpcError 420 ``FLOOD_WAIT_<X>`` (nothing taken, the refusal counted) when
        either bucket is empty or a wait is forced.
        """
        now = self._clock()
        chat_log = self.logs.get((bot_id, chat_id))
        if chat_log is None:
            chat_log = self.logs[(bot_id, chat_id)] = ChatLog(kind)
        buckets: list[tuple[_Bucket, Rate]] = []
        if limits is not None:
            overall, per_chat = limits
            bot = self._bots.setdefault(bot_id, _Bucket(overall.burst, now))
            chat = self._chats.setdefault((bot_id, chat_id), _Bucket(per_chat.burst, now))
            buckets = [(bot, overall), (chat, per_chat)]
        wait = max([forced_wait, *(b.wait(rate, now) for b, rate in buckets)])
        if wait > 0:
            chat_log.refused += 1
            raise RpcError(420, f"FLOOD_WAIT_{max(1, math.ceil(wait))}")
        for bucket, _rate in buckets:
            bucket.tokens -= 1
        chat_log.sent += 1
        chat_log.times.append(now)

    def reset(self) -> None:
        """Forget every bucket and log (full buckets from now on)."""
        self._bots.clear()
        self._chats.clear()
        self.logs.clear()
