"""Requests in flight through a node: the ones its actors asked, the ones they were asked.

Guarantees:

* every request taken from the broker gets exactly one reply: the actor's, or ``Busy``
  (mailbox full), ``Timeout`` (deadline passed first; a late result is then dropped),
  ``NoSuchAddress`` (not hosted here), ``BadRequest`` (duplicate or over-long id),
  or ``Unavailable`` (actor stopped, node stopping). Whoever removes the request from
  :attr:`Inflight.pending` first answers it (``dict.pop`` is atomic);
* every request an actor sends resolves its future exactly once: with the reply body,
  or ``BadRequest`` (too big to send), ``Busy`` (the I/O thread cannot take it now),
  ``Timeout`` (no reply by its deadline) or ``Unavailable`` (node stopping);
* memory follows what is pending: answered requests' deadlines are pruned.

Replies and requests leave from the calling actor's thread (:meth:`Inflight.reply`,
:meth:`Inflight.ask`); everything else runs on the node's I/O thread.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import struct
import threading
import time
from collections.abc import Mapping

import zmq

from protocols import errors
from protocols.base import Message
from protocols.codec import FrameError, encode_packet, open_body, pack_body
from protocols.envelope import Envelope
from runtime.link import BrokerLink
from runtime.mailbox import Mailbox
from runtime.thread_sockets import REQUEST, ThreadSockets

# Request ids travel in the pipe to the I/O thread with a one-byte length.
MAX_REQUEST_ID = 128
_DEADLINE = struct.Struct("<d")
# Answered requests leave their deadline in the heap until it passes; past this many
# extra entries the heap is rebuilt from what is pending.
_DEADLINES_SLACK = 4096


class Inflight:
    """The node's pending requests, both ways, and their deadlines (wall-clock times)."""

    def __init__(
        self,
        node_id: str,
        link: BrokerLink,
        threads: ThreadSockets,
        *,
        max_frame_bytes: int,
        request_timeout_s: float,
    ) -> None:
        self._node_id = node_id
        self._link = link
        self._threads = threads
        self._max_frame_bytes = max_frame_bytes
        self._request_timeout_s = request_timeout_s
        # Requests handed to a mailbox and not answered yet, by id.
        self.pending: dict[str, Envelope] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._outbound: dict[str, concurrent.futures.Future[Message]] = {}
        self._outbound_deadlines: list[tuple[float, str]] = []
        self._outbound_lock = threading.Lock()

    # -- asked by this node's actors ------------------------------------------------

    def ask(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        """Hand a request to the I/O thread; the future resolves with the reply body."""
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        packet = encode_packet(envelope)
        if len(packet) > self._max_frame_bytes:
            # The broker would drop this node's connection for a frame over 4x the limit.
            future.set_result(errors.BadRequest(message=self._too_big(len(packet))))
            return future
        with self._outbound_lock:
            self._outbound[envelope.id] = future
        deadline = envelope.deadline or time.time() + self._request_timeout_s
        request_id = envelope.id.encode()
        sent = self._threads.to_io(
            bytes([REQUEST])
            + _DEADLINE.pack(deadline)
            + bytes([len(request_id)])
            + request_id
            + packet
        )
        if not sent:
            with self._outbound_lock:
                self._outbound.pop(envelope.id, None)
            future.set_result(errors.Busy(message=f"node {self._node_id} cannot send now"))
        return future

    def forward(self, frame: bytes) -> None:
        """Send a request frame from the pipe to the broker; its deadline is watched."""
        (deadline,) = _DEADLINE.unpack_from(frame, 1)
        end = 10 + frame[9]
        heapq.heappush(self._outbound_deadlines, (deadline, frame[10:end].decode()))
        # A dropped one's asker gets Timeout at the deadline.
        self._link.forward(frame[end:], "request")

    def resolve(self, reply: Envelope) -> None:
        """A reply came: resolve its request's future, unless it timed out already."""
        with self._outbound_lock:
            future = self._outbound.pop(reply.reply_to, None)
        if future is not None:
            future.set_result(_open_reply(reply))

    # -- asked of this node's actors -------------------------------------------------

    def take(self, envelope: Envelope, mailbox: Mailbox | None) -> None:
        """Deliver a request to the mailbox of its target (None: not hosted), or answer it."""
        if mailbox is None:
            self.refuse(
                envelope,
                errors.NoSuchAddress(
                    address=envelope.target,
                    message=f"{envelope.target} is not hosted by node {self._node_id}",
                ),
            )
        elif envelope.expired():
            self.refuse(envelope, errors.Timeout(message="deadline passed before delivery"))
        elif mailbox.depth >= mailbox.capacity:
            self.refuse(
                envelope,
                errors.Busy(message=f"mailbox of {envelope.target} is full ({mailbox.capacity})"),
            )
        elif envelope.id in self.pending:
            self.refuse(envelope, errors.BadRequest(message=f"duplicate request id {envelope.id}"))
        elif len(envelope.id.encode()) > MAX_REQUEST_ID:
            message = f"request id longer than {MAX_REQUEST_ID} bytes"
            self.refuse(envelope, errors.BadRequest(message=message))
        else:
            if not envelope.deadline:
                envelope.deadline = time.time() + self._request_timeout_s
            self.pending[envelope.id] = envelope
            heapq.heappush(self._deadlines, (envelope.deadline, envelope.id))
            if len(self._deadlines) > 2 * len(self.pending) + _DEADLINES_SLACK:
                self._prune_deadlines()
            mailbox.tell(envelope)

    def reply(self, envelope: Envelope, epochs: Mapping[str, int]) -> None:
        """Send an actor's reply, at its address's epoch, unless its request was answered.

        Straight to the broker from the actor's thread (one hand-off less).
        """
        if self.pending.pop(envelope.reply_to, None) is None:
            return
        envelope.epoch = epochs.get(envelope.sender, 0)
        packet = encode_packet(envelope)
        if len(packet) > self._max_frame_bytes:
            error = errors.Internal(message=self._too_big(len(packet), "reply"))
            envelope.body = pack_body(error)
            packet = encode_packet(envelope)
        try:
            self._threads.dealer().send(packet, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # The requester gets its Timeout at the deadline; nothing else can be done.
            self._link.dropped(f"reply to {envelope.target}", exc)

    def refuse(self, envelope: Envelope, error: errors.Error) -> None:
        """Answer a request on the node's behalf (the actor never saw it)."""
        self._link.send(envelope.answer(pack_body(error), sender=self._node_id))

    def abandon(self, address: str, message: str) -> None:
        """Answer ``Unavailable`` what waits for ``address``'s stopped actor."""
        for request_id, pending in list(self.pending.items()):
            if pending.target == address and self.pending.pop(request_id, None) is not None:
                self.refuse(pending, errors.Unavailable(message=message))

    # -- deadlines ------------------------------------------------------------------

    def next_deadline(self) -> float:
        """The monotonic time of the earliest request deadline (inf if none)."""
        heads = [h[0][0] for h in (self._deadlines, self._outbound_deadlines) if h]
        if not heads:
            return float("inf")
        return time.monotonic() + (min(heads) - time.time())

    def expire(self, now: float) -> None:
        """Answer ``Timeout`` every request whose deadline (wall clock) is ``now`` or past."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._deadlines)
            pending = self.pending.pop(request_id, None)
            if pending is not None:
                self.refuse(
                    pending,
                    errors.Timeout(message=f"{pending.target} did not answer before the deadline"),
                )
        while self._outbound_deadlines and self._outbound_deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._outbound_deadlines)
            with self._outbound_lock:
                future = self._outbound.pop(request_id, None)
            if future is not None:
                future.set_result(errors.Timeout(message="no reply before the deadline"))

    def _prune_deadlines(self) -> None:
        """Drop the deadlines of answered requests, so memory follows what is pending."""
        # list() copies in one step: actor threads pop answered entries concurrently.
        pending = list(self.pending.items())
        self._deadlines = [(env.deadline, request_id) for request_id, env in pending]
        heapq.heapify(self._deadlines)

    def close(self) -> None:
        """The node stops: answer ``Unavailable`` everything still pending, both ways."""
        for pending in list(self.pending.values()):
            self.refuse(pending, errors.Unavailable(message="node is stopping"))
        self.pending.clear()
        with self._outbound_lock:
            for future in self._outbound.values():
                future.set_result(errors.Unavailable(message="node is stopping"))
            self._outbound.clear()

    def _too_big(self, size: int, what: str = "request") -> str:
        return f"{what} of {size} bytes exceeds max_frame_bytes ({self._max_frame_bytes})"


def _open_reply(envelope: Envelope) -> Message:
    try:
        return open_body(envelope.body)
    except FrameError as exc:
        return errors.BadRequest(message=f"unreadable reply: {exc.reason}")
