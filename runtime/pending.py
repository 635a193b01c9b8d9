"""The requests the broker has forwarded to nodes and not yet seen answered.

A node answers every request it is given exactly once (:mod:`runtime.inflight`), unless it
dies first. Then, without this table, the asker would wait for its whole deadline. With it,
the moment the broker presumes the node dead (its lease has surely expired), each request
the node still held is answered ``Unavailable``, saying that it may or may not have been
carried out. That stays the only answer: whatever the presumed-dead node sends later is
fenced by the broker (:meth:`runtime.leases.Leases.may_send_as`).

A node that says goodbye has answered everything it took before it stopped, so only
presumed-dead nodes are answered for. Broker thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from protocols import errors
from protocols.envelope import Envelope
from runtime.router import Router

__all__ = ["Pending"]


@dataclass(frozen=True)
class _Forwarded:
    asker: bytes  # the socket identity the answer goes to
    request: Envelope


class Pending:
    """Forwarded requests by node, each until its reply passes through the broker.

    An entry whose deadline passed ``grace_s`` ago (the node answers ``Timeout`` at the
    deadline; this one's answer was lost) is dropped by :meth:`prune`, so the table stays
    bounded by the requests in flight.
    """

    def __init__(self, router: Router, grace_s: float) -> None:
        self._router = router
        self._grace_s = grace_s
        # node identity -> {(asker's address, request id): the request}
        self._by_node: dict[bytes, dict[tuple[str, str], _Forwarded]] = {}
        # (asker's address, request id) -> node identity
        self._node_of: dict[tuple[str, str], bytes] = {}

    def __len__(self) -> int:
        return len(self._node_of)

    def forwarded(self, node: bytes, asker: bytes, request: Envelope) -> None:
        """``request`` from ``asker`` went to ``node``; it now waits for its reply."""
        key = (request.sender, request.id)
        self._by_node.setdefault(node, {})[key] = _Forwarded(asker, request)
        self._node_of[key] = node

    def answered(self, reply: Envelope) -> None:
        """A reply passes through: its request waits no more."""
        key = (reply.target, reply.reply_to)
        node = self._node_of.pop(key, None)
        if node is not None:
            requests = self._by_node[node]
            del requests[key]
            if not requests:
                del self._by_node[node]

    def node_died(self, node: bytes, node_id: str) -> int:
        """Answer ``Unavailable`` to every request ``node`` still held; returns how many."""
        requests = self._by_node.pop(node, {})
        for key, forwarded in requests.items():
            del self._node_of[key]
            request = forwarded.request
            message = (
                f"{request.target} was on node {node_id}, which stopped answering before "
                "it answered (its lease expired): the request may or may not have been "
                "carried out"
            )
            self._router.reply(forwarded.asker, request, errors.Unavailable(message=message))
        return len(requests)

    def prune(self, now: float | None = None) -> None:
        """Drop the entries whose deadline passed more than ``grace_s`` ago."""
        give_up = (time.time() if now is None else now) - self._grace_s
        for node, requests in list(self._by_node.items()):
            stale = [k for k, f in requests.items() if 0 < f.request.deadline < give_up]
            for key in stale:
                del requests[key]
                del self._node_of[key]
            if not requests:
                del self._by_node[node]
