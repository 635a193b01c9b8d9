"""A node's lease: how long the broker's acknowledgements keep this node's grants valid.

Every packet the broker acknowledges (a heartbeat, a claim) carries a sequence number
from :meth:`NodeLease.next_seq`; its send time is kept. When the broker acknowledges
one, the lease lasts ``lease_s`` from that packet's *sending*, never from its answer.
The broker counts its own view from the packet's arrival, later still, and lets an
address move on only ``expiry`` after it (:func:`protocols.broker.lease_bounds` keeps
``lease_s`` below ``expiry``): so this node's lease ends before the broker may grant its
addresses elsewhere, and the node stops its actors in time (:mod:`runtime.hosting`).
Used by the node's I/O thread only.
"""

from __future__ import annotations

import itertools
import time

# Send times kept for acknowledgements beyond this many are pruned (broker away).
_SENT_KEPT = 64


class NodeLease:
    """The end of this node's lease (monotonic), renewed by acknowledgements."""

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self.until = 0.0
        self._seq = itertools.count(1)
        self._sent_at: dict[int, float] = {}

    def valid(self, now: float) -> bool:
        """Does the lease hold at monotonic time ``now``?"""
        return now < self.until

    def next_seq(self) -> int:
        """A sequence number for a packet the broker acknowledges; its send time is kept."""
        seq = next(self._seq)
        now = self._sent_at[seq] = time.monotonic()
        if len(self._sent_at) > _SENT_KEPT:
            # The broker is away: an ack of a packet older than a lease would renew nothing.
            for old in [s for s, sent in self._sent_at.items() if sent < now - self.lease_s]:
                del self._sent_at[old]
        return seq

    def acknowledged(self, ack: int) -> None:
        """The broker had packet ``ack``: the lease lasts from its sending."""
        sent = self._sent_at.get(ack)
        if sent is None:
            return
        self.until = max(self.until, sent + self.lease_s)
        for seq in [s for s in self._sent_at if s <= ack]:
            del self._sent_at[seq]
