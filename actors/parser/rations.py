"""What a reader account may still do: sliding-window quotas, token buckets, and the
reader as the parser rations it.

Pure bookkeeping: the time is passed in (``now``, monotonic seconds), so every rule is
tested without waiting, and nothing here sends anything.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from config import ParserSettings
from protocols.session import session_address

__all__ = ["DAY", "DOWN_STATES", "Bucket", "Quota", "Reader"]

DAY = 86400.0
# A reader in one of these session states takes no channel, and its channels move.
DOWN_STATES = frozenset({"failed", "unauthorized"})


class Quota:
    """Sliding-window rations: at most ``n`` uses in any ``window_s`` seconds, per window.

    Pure bookkeeping (time is passed in), so it is tested without waiting.
    """

    def __init__(self, *limits: tuple[float, int]) -> None:
        self.limits = limits
        self._uses: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more use fits every window (0 when it fits now)."""
        longest = max(w for w, _ in self.limits)
        while self._uses and self._uses[0] <= now - longest:
            self._uses.popleft()
        wait = 0.0
        for window, n in self.limits:
            recent = [t for t in self._uses if t > now - window]
            if len(recent) >= n:
                wait = max(wait, recent[len(recent) - n] + window - now)
        return wait

    def take(self, now: float) -> None:
        self._uses.append(now)

    def left(self, now: float) -> int:
        """Uses left in the tightest window now."""
        return min(n - sum(1 for t in self._uses if t > now - w) for w, n in self.limits)


class Bucket:
    """A token bucket of ``per_min`` calls a minute (burst: a tenth of a minute's worth)."""

    def __init__(self, per_min: int) -> None:
        self.rate = per_min / 60.0
        self.burst = max(1.0, per_min / 10.0)
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self, now: float) -> bool:
        """One call now if the budget allows it (True), else nothing is taken."""
        self._refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def charge(self, now: float) -> None:
        """Count a call made anyway (a further page): the budget may go below zero, and
        later calls wait until it is paid back."""
        self._refill(now)
        self.tokens -= 1.0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now


@dataclass
class Reader:
    """One reader account as the parser rations it."""

    account: str
    limit: int
    resolves: Quota
    joins: Quota
    calls: Bucket
    channels: set[int] = field(default_factory=set)
    state: str = "unknown"
    full: bool = False  # Telegram answered CHANNELS_TOO_MUCH
    blocked: dict[str, float] = field(default_factory=dict)  # method class -> until

    @classmethod
    def rationed(cls, account: str, settings: ParserSettings) -> Reader:
        """A reader with fresh budgets of ``[parser]``: resolves per minute and per day,
        joins per hour and per day, history calls per minute."""
        return cls(
            account=account,
            limit=settings.channel_limit,
            resolves=Quota((60.0, settings.resolves_per_min), (DAY, settings.resolves_per_day)),
            joins=Quota((3600.0, settings.joins_per_hour), (DAY, settings.joins_per_day)),
            calls=Bucket(settings.calls_per_min),
        )

    @property
    def address(self) -> str:
        return session_address(self.account)

    def blocked_for(self, method_class: str, now: float) -> float:
        return max(0.0, self.blocked.get(method_class, 0.0) - now)

    def down(self, now: float, move_after: float) -> bool:
        """Revoked, logged out, or flood-waited for long: its channels should move."""
        if self.state in DOWN_STATES:
            return True
        return max(self.blocked_for("history", now), 0.0) > move_after

    def has_room(self) -> bool:
        return not self.full and len(self.channels) < self.limit
