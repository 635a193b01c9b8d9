"""Remember the replies to side-effecting requests by their idempotency key.

Guarantee: within ``ttl_s`` and the last ``max_entries`` keys, a request repeating a key
is answered with the bytes of the first reply, and its handler does not run again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec


class IdempotencyCache:
    """A bounded, time-limited map from idempotency key to the encoded reply body.

    Not thread-safe: it belongs to one actor and is used only from its thread.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, msgspec.Raw]] = OrderedDict()

    def get(self, key: str) -> msgspec.Raw | None:
        """The first reply recorded for ``key``, or None if unknown or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, reply = entry
        if self._clock() - stored_at > self._ttl:
            del self._entries[key]
            return None
        return reply

    def put(self, key: str, reply: msgspec.Raw) -> None:
        """Record the reply for ``key``; the oldest entry goes when the cache is full."""
        self._entries[key] = (self._clock(), reply)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
