"""Flood control for one Telegram account: proactive token buckets and reactive flood waits.

A session actor keeps one `FloodControl` per account and awaits `FloodControl.acquire`
before every Telegram request, inside that request's own task. Two things can hold a
request back:

- its *method class*'s token bucket (`method_class`, `RateLimit`), which keeps the account
  well under the rates at which Telegram starts answering FLOOD_WAIT or restricting it;
- a flood wait Telegram imposed on its exact method (`FloodControl.record_flood_wait`).
  Telegram's flood waits are per method, so a wait on ``contacts.resolveUsername`` never
  holds back ``messages.getHistory``.

Waiting is an `asyncio.sleep` in the waiting request's task only, so other requests of
the same actor keep flowing. A request whose deadline comes before the wait ends gets
`FloodWaitError` at once instead of waiting in vain.

Method names are accepted in the spellings in use: Telethon's class name with or without
its namespace (``"contacts.ResolveUsernameRequest"``, ``"ResolveUsernameRequest"``) and
the TL schema name (``"contacts.resolveUsername"``). They are keyed by their TL name
(`tl_name`); a bare name stays bare, so use one spelling per method, e.g. `request_name`
of the Telethon request.

Everything here runs on the one event loop of its actor and needs no locks: no ``await``
separates reading a bucket from reserving its token.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from config.settings import METHOD_CLASSES

__all__ = [
    "BOT_LIMITS",
    "USER_LIMITS",
    "FloodControl",
    "FloodWaitError",
    "RateLimit",
    "method_class",
    "request_name",
    "tl_name",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

# The requests whose rate matters, by method class (TL schema names). Everything else is
# "other". Kept to the requests a session actor makes; add a request where it belongs.
_CLASS_METHODS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        # Telegram rations username resolution hardest of all: a few hundred a day gets a
        # user account FLOOD_WAITs of hours.
        "resolve": frozenset(
            {"contacts.resolveUsername", "messages.checkChatInvite", "contacts.search"}
        ),
        "join": frozenset(
            {"channels.joinChannel", "messages.importChatInvite", "channels.leaveChannel"}
        ),
        "send": frozenset(
            {
                "messages.sendMessage",
                "messages.sendMedia",
                "messages.editMessage",
                "messages.forwardMessages",
                # Paced like the sends and edits they undo (a bot's delivery deletes).
                "messages.deleteMessages",
                "channels.deleteMessages",
            }
        ),
        "history": frozenset(
            {
                "messages.getHistory",
                "channels.getMessages",
                "messages.getMessages",
                "updates.getChannelDifference",
            }
        ),
        "dialogs": frozenset({"messages.getDialogs"}),
    }
)
_CLASS_OF: Final[Mapping[str, str]] = MappingProxyType(
    {method: cls for cls, methods in _CLASS_METHODS.items() for method in methods}
)
# Bare names (no namespace) by their method part. Where a name exists in several
# namespaces (getMessages), all of them are in the same class here.
_CLASS_OF_BARE: Final[Mapping[str, str]] = MappingProxyType(
    {method.partition(".")[2]: cls for method, cls in _CLASS_OF.items()}
)

_SUFFIX: Final = "Request"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, then ``rate_per_s`` requests a second.

    Raises ValueError unless ``rate_per_s`` is positive and finite and ``burst`` >= 1.
    """

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s must be positive and finite, not {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")


# Defaults. A class missing from a mapping is not rate limited ("other" in both).
#
# User accounts: Telegram publishes no limits for them, so these are conservative
# community experience: resolving usernames is rationed hardest (bursts of lookups are what
# gets user accounts multi-hour FLOOD_WAITs), joining and leaving chats hardest after it
# (Telegram caps joins at a few dozen a day and restricts accounts that churn), sending at
# about one message a second, reading history and dialogs freely but not in tight loops.
USER_LIMITS: Final[Mapping[str, RateLimit]] = MappingProxyType(
    {
        "resolve": RateLimit(rate_per_s=0.1, burst=5),
        "join": RateLimit(rate_per_s=1 / 60, burst=2),
        "send": RateLimit(rate_per_s=1.0, burst=5),
        "history": RateLimit(rate_per_s=5.0, burst=20),
        "dialogs": RateLimit(rate_per_s=1.0, burst=3),
    }
)
# Bot accounts: Telegram's published bot limits (core.telegram.org/bots/faq, "My bot is
# hitting limits") are about 30 messages a second overall, 1 a second per chat and 20 a
# minute per group; the per-chat and per-group limits are the caller's to keep, the send
# bucket keeps the overall one. Bots may not join chats, read history or list dialogs the
# way users do, so those classes only guard against runaway loops.
BOT_LIMITS: Final[Mapping[str, RateLimit]] = MappingProxyType(
    {
        "resolve": RateLimit(rate_per_s=1.0, burst=10),
        "join": RateLimit(rate_per_s=1.0, burst=5),
        "send": RateLimit(rate_per_s=30.0, burst=30),
        "history": RateLimit(rate_per_s=30.0, burst=30),
        "dialogs": RateLimit(rate_per_s=1.0, burst=5),
    }
)


def tl_name(name: str) -> str:
    """Return the TL schema name of a request given in any accepted spelling.

    ``"contacts.ResolveUsernameRequest"`` and ``"contacts.resolveUsername"`` both give
    ``"contacts.resolveUsername"``; a bare ``"ResolveUsernameRequest"`` gives
    ``"resolveUsername"`` (there is no telling its namespace in general). Never raises.
    """
    namespace, dot, method = name.rpartition(".")
    if method[:1].isupper() and method.endswith(_SUFFIX) and len(method) > len(_SUFFIX):
        # Telethon names a request's class after the TL name, capitalized, plus "Request";
        # TL names start in lower case, and some end in "Request" themselves.
        method = method[0].lower() + method[1 : -len(_SUFFIX)]
    return f"{namespace}{dot}{method}"


def request_name(request: object) -> str:
    """Return the TL schema name of a Telethon request object, with its namespace.

    E.g. ``"contacts.resolveUsername"`` for a ``ResolveUsernameRequest``; requests outside
    any namespace (``InvokeWithLayerRequest``) give a bare name. Never raises.
    """
    cls = type(request)
    # Telethon puts namespaced requests in telethon.tl.functions.<namespace>.
    namespace = cls.__module__.rpartition(".")[2]
    bare = tl_name(cls.__name__)
    return bare if namespace == "functions" else f"{namespace}.{bare}"


def method_class(request_name: str) -> str:
    """Return the method class of a request (one of `METHOD_CLASSES`), "other" if unknown.

    Accepts every spelling `tl_name` does. A bare name is classed by its method part alone,
    so a bare ``"SearchRequest"`` counts as the rationed ``contacts.search``. Never raises.
    """
    name = tl_name(request_name)
    if "." in name:
        return _CLASS_OF.get(name, "other")
    return _CLASS_OF_BARE.get(name, "other")


class FloodWaitError(Exception):
    """``method`` (its TL name) may not run for ``retry_after`` more seconds, too long to wait.

    Distinct from Telethon's error of the same name: this one is raised before the request
    is sent, and nothing was sent.
    """

    def __init__(self, method: str, retry_after: float) -> None:
        super().__init__(method, retry_after)
        self.method = method
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.method} may run again in {self.retry_after:.3f} s"


class _Bucket:
    """A token bucket whose tokens may be reserved ahead: a negative count is a queue.

    Each reservation takes the next token to come, so concurrent waiters are served in
    order at the configured rate and never overshoot it.
    """

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._rate = limit.rate_per_s
        self._burst = float(limit.burst)
        self._tokens = self._burst
        self._updated = now

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until a token is free for a new reservation (0 if now)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self._rate)

    def reserve(self, now: float) -> float:
        """Reserve the next token; return the seconds from ``now`` until it is due."""
        due = self.wait(now)
        self._tokens -= 1.0
        return due

    def give_back(self) -> None:
        """Return a reserved token that was not used, as if it had never been reserved."""
        # May overfill for now; the next refill caps the count at burst, as it would have
        # capped it had the token not been reserved.
        self._tokens += 1.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now


class FloodControl:
    """Rate limits and flood waits of one account.

    ``limits`` maps method classes to their bucket; a class it leaves out is not rate
    limited (so pass ``{**USER_LIMITS, "send": RateLimit(...)}`` to override one class).
    ``clock`` is a monotonic clock in seconds and ``sleep`` waits that many seconds of it;
    they are replaceable together (tests drive both from a fake clock). Use from one event
    loop only. Raises ValueError if ``limits`` names an unknown method class.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        unknown = sorted(set(limits) - set(METHOD_CLASSES))
        if unknown:
            known = ", ".join(METHOD_CLASSES)
            raise ValueError(f"unknown method class {', '.join(unknown)} (known: {known})")
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._buckets = {cls: _Bucket(limit, now) for cls, limit in limits.items()}
        # TL name -> clock time at which its flood wait ends. Expired entries are dropped
        # when next looked at.
        self._flood_until: dict[str, float] = {}

    def record_flood_wait(self, method: str, seconds: float, scope: str = "") -> None:
        """Block ``method`` (that method only; with ``scope``, only its requests of that
        scope, e.g. one chat) for ``seconds`` from now.

        Telegram answered a request of ``method`` with FLOOD_WAIT_<seconds>. A wait already
        recorded that ends later is kept: an answer to an older request may arrive last.
        """
        name = _scoped(tl_name(method), scope)
        until = self._clock() + seconds
        self._flood_until[name] = max(until, self._flood_until.get(name, until))

    async def acquire(self, method: str, deadline: float | None, scope: str = "") -> None:
        """Wait until ``method`` (of ``scope``) may be sent, then take its class's token.

        Returns once both its flood wait (if any) is over and a token of its class is
        reserved and due; the caller then sends the request. ``deadline`` is absolute, in
        `time.time` seconds; None waits as long as needed. Waiting sleeps this task only.

        Raises FloodWaitError(method, retry_after) without waiting if the wait needed is
        longer than the time left until ``deadline``, or later if the wait grows past it
        meanwhile (Telegram imposed a new flood wait on the method). A request that raises
        (or is cancelled) holds no token: any it had reserved is given back. An expired
        deadline is not this method's business: a request that needs no wait proceeds.
        """
        name = tl_name(method)
        bucket = self._buckets.get(method_class(name))
        name = _scoped(name, scope)
        # On our own clock from here on, so a wall-clock jump while waiting changes nothing.
        give_up_at = math.inf if deadline is None else self._clock() + (deadline - time.time())
        while True:
            now = self._clock()
            flood = self._flood_left(name, now)
            needed = max(flood, bucket.wait(now) if bucket else 0.0)
            if needed > 0 and now + needed > give_up_at:
                raise FloodWaitError(name, needed)
            if flood > 0:
                # No token is reserved while the flood wait lasts: the method's class-mates
                # would otherwise queue behind a method that cannot run.
                await self._sleep(flood)
                continue
            if bucket is None:
                return
            due = bucket.reserve(now)
            if due == 0:
                return
            try:
                await self._sleep(due)
            except BaseException:
                bucket.give_back()
                raise
            if self._flood_left(name, self._clock()) == 0:
                return
            # Telegram flood-waited this method while we queued: wait that out instead.
            bucket.give_back()

    def retry_after(self, method: str) -> float:
        """Seconds until ``method`` may run (0 if now), counting its flood wait and bucket.

        Reserves nothing; a request that acquires in the meantime can make it longer.
        """
        name = tl_name(method)
        now = self._clock()
        bucket = self._buckets.get(method_class(name))
        return max(self._flood_left(name, now), bucket.wait(now) if bucket else 0.0)

    def snapshot(self) -> dict[str, float]:
        """Return the active flood waits: seconds left by TL method name, for status."""
        now = self._clock()
        waits = {name: self._flood_left(name, now) for name in list(self._flood_until)}
        return {name: left for name, left in waits.items() if left > 0}

    def _flood_left(self, name: str, now: float) -> float:
        """Seconds left of ``name``'s flood wait (0 if none); forgets it once over."""
        until = self._flood_until.get(name)
        if until is None:
            return 0.0
        if until <= now:
            del self._flood_until[name]
            return 0.0
        return until - now


def _scoped(name: str, scope: str) -> str:
    """The key of a flood wait: the TL name, and its scope (a chat) if it has one."""
    return f"{name}@{scope}" if scope else name
