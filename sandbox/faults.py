"""Fault injection for the sandbox: flood waits, dropped connections, delays, stalls,
withheld channel updates and per-chat bot flood waits.

A fault matches a method (by its TL name, ``"messages.getHistory"``, or every method
with ``None``) and optionally one account, and lasts for a number of calls, for a time
window, or both (whichever ends first). :meth:`Faults.before` runs before a query's
handler, :meth:`Faults.after` after it; the world calls both.

Some kinds are about a peer rather than a call, and the world asks for them by peer:

* ``withhold`` (``peer_id`` = a channel): the channel's posts, edits and deletions are
  stored and readable (history, ``updates.getChannelDifference``) but never pushed live,
  and ``updates.getDifference`` does not point at the channel either
  (:meth:`Faults.withheld`) -- Telegram's behaviour for large channels, at its worst;
* ``delay_updates`` (``peer_id`` = a channel): its live updates are pushed ``seconds``
  late, in order (:meth:`Faults.update_delay`), as Telegram does for big channels;
* ``chat_flood`` (``user_id`` = a bot, ``peer_id`` = a chat): the bot's
  ``messages.sendMessage`` to that chat answers ``FLOOD_WAIT_<seconds left>`` until the
  window ends (:meth:`Faults.chat_flood_left`).

Forgetting an auth key is not a fault of a call but of the world's state; see
:meth:`sandbox.world.World.forget_auth_key`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from dataclasses import dataclass
from typing import Literal

from telethon.tl.tlobject import TLObject

from sandbox.backend import DropConnection, RpcError

FaultKind = Literal[
    "flood",
    "drop_before",
    "drop_after",
    "delay",
    "stall",
    "withhold",
    "delay_updates",
    "chat_flood",
]
_KINDS: frozenset[str] = frozenset(FaultKind.__args__)  # type: ignore[attr-defined]

# How often a query held by a stall looks whether the stall is over.
_STALL_POLL_S = 0.05


@functools.cache
def method_name(request_type: type[TLObject]) -> str:
    """The TL name of a Telethon request class: ``GetHistoryRequest`` -> ``messages.getHistory``."""
    namespace = request_type.__module__.rsplit(".", 1)[-1]
    base = request_type.__name__.removesuffix("Request")
    name = base[:1].lower() + base[1:]
    return name if namespace == "functions" else f"{namespace}.{name}"


def normalize_method(method: str | type[TLObject] | None) -> str | None:
    """Accept a request class, ``"messages.getHistory"`` or ``"messages.GetHistoryRequest"``."""
    if method is None or (isinstance(method, str) and method in ("", "*")):
        return None
    if isinstance(method, type):
        return method_name(method)
    namespace, _, base = method.rpartition(".")
    base = base.removesuffix("Request")
    base = base[:1].lower() + base[1:]
    return f"{namespace}.{base}" if namespace else base


@dataclass
class Fault:
    """One injected fault; ``remaining`` None means unlimited within the window."""

    id: int
    kind: FaultKind
    method: str | None
    user_id: int | None
    seconds: float
    remaining: int | None
    until: float | None  # time.monotonic() deadline
    peer_id: int | None = None  # the channel or chat of a peer fault

    def live(self) -> bool:
        """Whether the fault can still fire (calls left and its window not over)."""
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def matches(self, method: str, user_id: int | None) -> bool:
        if not self.live():
            return False
        if self.method is not None and self.method != method:
            return False
        return self.user_id is None or self.user_id == user_id

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class Faults:
    """The set of active faults. Safe to use from the world's event loop only."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        kind: FaultKind,
        method: str | type[TLObject] | None,
        *,
        seconds: float = 0.0,
        count: int | None = 1,
        duration: float | None = None,
        user_id: int | None = None,
        peer_id: int | None = None,
    ) -> int:
        """Add a fault; returns its id. ``count=None`` and ``duration=None`` is forever.

        Raises ValueError for an unknown kind.
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(
            id=next(self._ids),
            kind=kind,
            method=normalize_method(method),
            user_id=user_id,
            seconds=seconds,
            remaining=count,
            until=time.monotonic() + duration if duration is not None else None,
            peer_id=peer_id,
        )
        self._faults.append(fault)
        return fault.id

    def remove(self, fault_id: int) -> bool:
        """Remove one fault; False if it was not active."""
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def active(self) -> list[Fault]:
        """The faults that can still fire."""
        self._faults = [f for f in self._faults if f.live()]
        return list(self._faults)

    def _take(self, kind: FaultKind, method: str, user_id: int | None) -> Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.matches(method, user_id):
                fault.consume()
                return fault
        return None

    def _peer_faults(self, kind: FaultKind, peer_id: int) -> list[Fault]:
        return [f for f in self._faults if f.kind == kind and f.peer_id == peer_id and f.live()]

    def withheld(self, channel_id: int) -> bool:
        """Whether live updates of this channel are withheld (a ``withhold`` fault is on)."""
        return bool(self._faults) and bool(self._peer_faults("withhold", channel_id))

    def update_delay(self, channel_id: int) -> float:
        """Seconds by which live updates of this channel are held back (0.0: none)."""
        if not self._faults:
            return 0.0
        return max((f.seconds for f in self._peer_faults("delay_updates", channel_id)), default=0.0)

    def release(self, kind: FaultKind, peer_id: int) -> int:
        """Remove every fault of ``kind`` about ``peer_id``; returns how many there were."""
        doomed = {f.id for f in self._faults if f.kind == kind and f.peer_id == peer_id}
        self._faults = [f for f in self._faults if f.id not in doomed]
        return len(doomed)

    def chat_flood_left(self, bot_id: int, chat_id: int) -> float:
        """Seconds left of a forced flood wait of ``bot_id`` in ``chat_id`` (0.0 if none)."""
        if not self._faults:
            return 0.0
        left = 0.0
        for fault in self._peer_faults("chat_flood", chat_id):
            if fault.user_id == bot_id and fault.until is not None:
                left = max(left, fault.until - time.monotonic())
        return left

    def stalled(self, user_id: int | None) -> bool:
        """Whether the account's connections are stalled: nothing answered, nothing pushed."""
        return any(f.kind == "stall" and f.matches("", user_id) for f in self._faults)

    async def before(self, method: str, user_id: int | None) -> None:
        """Apply faults due before a query executes.

        Holds the query while a matching stall lasts and sleeps for a matching delay, then
        raises DropConnection (``drop_before``) or RpcError 420 ``FLOOD_WAIT_<seconds>``
        (``flood``).
        """
        if not self._faults:
            return
        while any(f.kind == "stall" and f.matches(method, user_id) for f in self._faults):
            await asyncio.sleep(_STALL_POLL_S)
        delay = self._take("delay", method, user_id)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        if self._take("drop_before", method, user_id) is not None:
            raise DropConnection()
        flood = self._take("flood", method, user_id)
        if flood is not None:
            raise RpcError(420, f"FLOOD_WAIT_{round(flood.seconds)}")

    def after(self, method: str, user_id: int | None) -> None:
        """Apply faults due after a query executed: raises DropConnection (``drop_after``)."""
        if self._faults and self._take("drop_after", method, user_id) is not None:
            raise DropConnection()
