"""Supervision: restart a crashed actor with backoff, within a bounded intensity.

As in Erlang/OTP, a restart policy allows at most ``max_restarts`` restarts within any
``within_s`` seconds; one crash more and the actor is marked failed and reported instead
of restarted, so a broken actor never loops. Backoff doubles from ``backoff_initial_s``
up to ``backoff_max_s`` while crashes keep coming, and resets once the actor has run
``within_s`` seconds without one.

What a restart means here: the actor's state object is discarded and built anew from its
factory (``on_start`` runs again); its mailbox and the requests queued in it survive, so a
crash loses only the message that caused it, which is answered ``Internal``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class ActorState(StrEnum):
    """The life of one supervised actor, as shown in status."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """How many restarts are allowed, how fast, and how long to back off between them."""

    max_restarts: int = 5
    within_s: float = 10.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.within_s <= 0:
            raise ValueError("max_restarts must be >= 0 and within_s > 0")
        if not 0 <= self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")


@dataclass
class Supervision:
    """The restart record of one actor; not thread-safe (the actor's own thread owns it).

    Guarantees: :meth:`crashed` returns a backoff delay at most ``max_restarts`` times in
    any window of ``within_s`` seconds, and ``None`` (give up) after that.
    """

    policy: RestartPolicy
    state: ActorState = ActorState.STARTING
    restarts: int = 0
    last_error: str = ""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _recent: deque[float] = field(default_factory=deque, repr=False)

    def crashed(self, error: str) -> float | None:
        """Record a crash; the delay before restarting, or None when the actor failed."""
        now = self.clock()
        self.last_error = error
        while self._recent and now - self._recent[0] > self.policy.within_s:
            self._recent.popleft()
        if len(self._recent) >= self.policy.max_restarts:
            self.state = ActorState.FAILED
            return None
        self._recent.append(now)
        self.restarts += 1
        self.state = ActorState.RESTARTING
        streak = len(self._recent) - 1
        return min(self.policy.backoff_initial_s * (2**streak), self.policy.backoff_max_s)

    def describe_failure(self) -> str:
        """Why the actor is failed, for status output and ``Unavailable`` replies."""
        return (
            f"failed after {self.policy.max_restarts} restarts within "
            f"{self.policy.within_s:g}s; last error: {self.last_error}"
        )
