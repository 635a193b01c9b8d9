"""A node: one process's host for actors, connected to the broker.

The node's I/O thread is the only user of its broker socket. Actor threads reach it
through thread-local inproc PUSH sockets (:class:`_ThreadSockets`), so every ZeroMQ socket
is used by exactly one thread.

Guarantees:

* an actor runs only after the broker granted its address to this node and while the
  node's lease is valid: the node stops (suspends) every actor on its own once it has
  heard no acknowledgement from the broker for the lease duration, before the broker
  can grant the address elsewhere, and resumes it when the broker confirms the grant
  again; a revoked grant stops the actor too;
* after a broker restart the node re-claims what it holds with its epochs and keeps its
  actors running, if the broker is back within the lease;
* the node is its id plus a random instance: a second process with the same id is
  refused (:class:`AddressTakenError` naming the running one), and nobody else can speak
  on its connection;
* no send blocks: a packet the broker cannot take now is dropped and counted (the lease
  covers the loss); a broker that cannot be reached is reported with its likely cause
  (nothing listening, CURVE key mismatch) within the lease duration;
* every request taken from the broker gets exactly one reply: the actor's, or ``Busy``
  (mailbox full), ``Timeout`` (deadline passed first; a late result is then dropped),
  ``NoSuchAddress`` (not hosted here), or ``Unavailable`` (node stopping);
* :meth:`Node.stop` releases the addresses, drains the mailboxes, forwards their replies,
  says goodbye and closes every socket; it does not hang.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import pykka
import structlog
import zmq

from protocols import errors
from protocols.base import Message
from protocols.broker import (
    NODE_PREFIX,
    ActorInfo,
    Claim,
    Disconnect,
    Granted,
    Heartbeat,
    Ready,
    Refused,
    Release,
    Revoked,
    lease_bounds,
)
from protocols.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameError,
    decode_packet,
    encode_packet,
    open_body,
    pack_body,
)
from protocols.envelope import Envelope
from runtime import curve
from runtime.actor import ActorFactory
from runtime.bus import BusListener
from runtime.errors import NO_BROKER_ADVICE, AddressTakenError, BrokerUnreachableError
from runtime.logging import LogThrottle
from runtime.mailbox import Mailbox
from runtime.router import SUBSOCKET_SEPARATOR
from runtime.supervisor import RestartPolicy

log = structlog.get_logger("node")

# How long a thread's new publisher waits for the bus's subscriptions to reach it.
_BUS_JOIN_TIMEOUT_MS = 500

# The pipe from other threads to the I/O thread carries one frame per message (pyzmq's
# multipart calls cost several times a plain send): a kind byte, then its fields.
_REQUEST = ord("q")  # deadline (8-byte double), id length (1 byte), id, packet
_CLAIM = ord("c")  # address
_RELEASE_ALL = ord("R")
_STOP = ord("S")
_DEADLINE = struct.Struct("<d")
# Answered requests leave their deadline in the heap until it passes; past this many
# extra entries the heap is rebuilt from what is pending.
_DEADLINES_SLACK = 4096
# Request ids travel in the pipe with a one-byte length.
MAX_REQUEST_ID = 128
# Send times kept for acknowledgements beyond this many are pruned (broker away).
_SENT_KEPT = 64
# Bound on a send from another thread to the I/O thread (its pipe holds 1000 frames).
_PIPE_SEND_TIMEOUT_MS = 2000
# What the broker socket's monitor reports, and what each says about an unreachable broker.
_MONITORED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def default_node_id() -> str:
    """``<host>-<pid>``: unique per process on a host, readable in status output."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class NodeOptions:
    """Where the broker is and how this node behaves; see ``config.RuntimeSettings``."""

    broker: str
    events_in: str
    events_out: str = ""  # the bus's subscriber side; needed only by actors that subscribe
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    mailbox_size: int = 1000
    request_timeout_s: float = 10.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    standby: bool = False
    curve_server_key: str | None = None


class Node:
    """Hosts actors at addresses the broker grants it."""

    def __init__(
        self,
        options: NodeOptions,
        node_id: str | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.node_id = node_id or default_node_id()
        self.options = options
        self._zmq = context or zmq.Context.instance()
        self._factories: dict[str, ActorFactory] = {}
        self._mailboxes: dict[str, Mailbox] = {}
        self._epochs: dict[str, int] = {}
        self._refusals: dict[str, errors.NotOwner] = {}
        # Requests handed to a mailbox and not answered yet, by id.
        self._pending: dict[str, Envelope] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._outbound: dict[str, concurrent.futures.Future[Message]] = {}
        self._outbound_deadlines: list[tuple[float, str]] = []
        self._outbound_lock = threading.Lock()
        self._decided = threading.Condition()
        self._released = threading.Event()
        self._pull_endpoint = f"inproc://switchboard-node-{id(self):x}"
        if SUBSOCKET_SEPARATOR.decode() in self.node_id:
            raise ValueError(f"a node id may not contain {SUBSOCKET_SEPARATOR.decode()!r}")
        self._threads = _ThreadSockets(
            self._zmq,
            self._pull_endpoint,
            options.events_in,
            options.broker,
            self.node_id,
            options.curve_server_key,
        )
        self._bus = BusListener(
            self._zmq,
            options.events_out,
            self._deliver_event,
            curve_server_key=options.curve_server_key,
            max_frame_bytes=options.max_frame_bytes,
        )
        self._thread: threading.Thread | None = None
        self._running = False
        self._dealer: zmq.Socket | None = None
        self._pull: zmq.Socket | None = None
        self._broker_seen = 0.0
        # Random per process, never shown: the broker knows this process by it, and no
        # other peer can guess the socket identity to speak on this node's connection.
        self._identity = f"{self.node_id}{SUBSOCKET_SEPARATOR.decode()}{secrets.token_hex(8)}"
        self._threads.prefix = self._identity
        self._lease_s, _ = lease_bounds(options.heartbeat_interval_s, options.heartbeat_liveness)
        self._lease_until = 0.0
        self._ready_sent = 0.0
        self._seq = itertools.count(1)
        self._sent_at: dict[int, float] = {}
        # Addresses whose actor was stopped when the lease ran out, to claim again, with
        # the epoch they had (the broker prefers the last holder).
        self._suspended: dict[str, int] = {}
        self._node_refusal: errors.NotOwner | None = None
        self._monitor: zmq.Socket | None = None
        self._link = _Link()
        self.dropped_sends = 0
        self._send_failing = False
        self._log = log.bind(node=self.node_id)
        self._bad_frame = LogThrottle(self._log, "dropped bad frame from broker")

    # -- public API ---------------------------------------------------------------

    def add(self, address: str, factory: ActorFactory) -> None:
        """Host an actor at ``address``; claimed from the broker now if running.

        Raises ValueError if this node already hosts that address.
        """
        if address in self._factories:
            raise ValueError(f"{address} is already hosted by node {self.node_id}")
        self._factories[address] = factory
        if self._running:
            self._threads.to_io(bytes([_CLAIM]) + address.encode())

    def start(self, timeout: float = 10.0) -> None:
        """Connect, claim every added address, and wait until each is decided.

        Raises :class:`AddressTakenError` naming the owner if an address is refused and
        the node is not a standby; TimeoutError if the broker does not answer in time.
        """
        self._pull = self._zmq.socket(zmq.PULL)
        self._pull.bind(self._pull_endpoint)
        self._connect()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"node-{self.node_id}", daemon=True)
        self._thread.start()
        if not self.wait_decided(self._factories, timeout):
            raise BrokerUnreachableError(self.options.broker, timeout, self._link.cause())
        if self._node_refusal is not None:
            raise AddressTakenError(self._node_refusal)
        if self._refusals and not self.options.standby:
            raise AddressTakenError(next(iter(self._refusals.values())))

    def wait_decided(self, addresses: Iterable[str], timeout: float) -> bool:
        """Wait until each address is granted or refused (or the node is); False on timeout."""
        wanted = set(addresses)
        with self._decided:
            return self._decided.wait_for(
                lambda: (
                    self._node_refusal is not None
                    or all(a in self._epochs or a in self._refusals for a in wanted)
                ),
                timeout,
            )

    def wait_granted(self, address: str, timeout: float) -> bool:
        """Wait until ``address`` is granted to this node (a standby's takeover)."""
        with self._decided:
            return self._decided.wait_for(lambda: address in self._mailboxes, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Release addresses, drain mailboxes, say goodbye and close sockets (idempotent)."""
        if not self._running:
            return
        self._threads.to_io(bytes([_RELEASE_ALL]))
        self._released.wait(timeout)
        deadline = time.monotonic() + timeout
        for mailbox in list(self._mailboxes.values()):
            mailbox.stopping.set()
        for mailbox in list(self._mailboxes.values()):
            try:
                mailbox.stop(timeout=max(0.1, deadline - time.monotonic()))
            except pykka.Timeout:
                self._log.warning("mailbox did not drain in time", address=mailbox.address)
        self._threads.to_io(bytes([_STOP]))
        if self._thread is not None:
            self._thread.join(timeout)
        self._bus.stop()
        self._threads.close_all()
        self._running = False

    def actors(self) -> list[ActorInfo]:
        """The hosted actors as status shows them (any thread)."""
        return [mb.info() for mb in list(self._mailboxes.values())]

    def refusal(self, address: str) -> errors.NotOwner | None:
        """Why the broker refused ``address`` to this node, if it did."""
        return self._refusals.get(address)

    def epoch(self, address: str) -> int | None:
        """The fencing epoch of this node's grant for ``address``, if granted."""
        return self._epochs.get(address)

    # -- Port (called from actor threads) -------------------------------------------

    def send_request(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        packet = encode_packet(envelope)
        if len(packet) > self.options.max_frame_bytes:
            # The broker would drop this node's connection for a frame over 4x the limit.
            future.set_result(errors.BadRequest(message=_too_big(len(packet), self.options)))
            return future
        with self._outbound_lock:
            self._outbound[envelope.id] = future
        deadline = envelope.deadline or time.time() + self.options.request_timeout_s
        request_id = envelope.id.encode()
        sent = self._threads.to_io(
            bytes([_REQUEST])
            + _DEADLINE.pack(deadline)
            + bytes([len(request_id)])
            + request_id
            + packet
        )
        if not sent:
            with self._outbound_lock:
                self._outbound.pop(envelope.id, None)
            future.set_result(errors.Busy(message=f"node {self.node_id} cannot send now"))
        return future

    def send_reply(self, envelope: Envelope) -> None:
        # Straight to the broker from the actor's thread (one hand-off less). Exactly one
        # answer per request: whoever pops the pending entry first, this reply or the I/O
        # thread's Timeout, sends; dict.pop is atomic.
        if self._pending.pop(envelope.reply_to, None) is None:
            return
        envelope.epoch = self._epochs.get(envelope.sender, 0)
        packet = encode_packet(envelope)
        if len(packet) > self.options.max_frame_bytes:
            error = errors.Internal(message=_too_big(len(packet), self.options, "reply"))
            envelope.body = pack_body(error)
            packet = encode_packet(envelope)
        try:
            self._threads.dealer().send(packet, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # The requester gets its Timeout at the deadline; nothing else can be done.
            self._dropped(f"reply to {envelope.target}", exc)

    def publish(self, topic: str, event: Message) -> None:
        pub = self._threads.pub()
        pub.send(topic.encode(), zmq.SNDMORE)
        pub.send(encode_packet(event))

    def subscribe(self, address: str, prefix: str) -> None:
        """Feed bus events under ``prefix`` to ``address``'s mailbox (see BusListener).

        Raises RuntimeError when the node was given no ``events_out`` endpoint.
        """
        if not self.options.events_out:
            raise RuntimeError(f"node {self.node_id} has no events_out endpoint to subscribe")
        self._bus.subscribe(address, prefix)

    def _deliver_event(self, address: str, topic: str, event: Message) -> None:
        mailbox = self._mailboxes.get(address)
        if mailbox is not None and not mailbox.deliver(topic, event):
            dropped = mailbox.events_dropped
            if dropped == 1 or dropped % 1000 == 0:
                self._log.warning(
                    "mailbox full, bus event dropped", address=address, dropped=dropped
                )

    # -- the I/O thread -------------------------------------------------------------

    def _connect(self) -> None:
        """Open the one socket to the broker (for the node's life) and say hello.

        ZeroMQ reconnects it by itself (to a restarted broker too); ZMTP heartbeats drop a
        connection that went silent, so a half-open one does not linger.
        """
        dealer = self._zmq.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self._identity.encode())
        dealer.setsockopt(zmq.LINGER, 1000)
        dealer.setsockopt(zmq.MAXMSGSIZE, 4 * self.options.max_frame_bytes)
        interval_ms = max(1, int(self.options.heartbeat_interval_s * 1000))
        dealer.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(interval_ms, int(self._lease_s * 1000)))
        curve.dial(dealer, self.options.curve_server_key)
        self._monitor = dealer.get_monitor_socket(_MONITORED)
        dealer.connect(self.options.broker)
        self._dealer = dealer
        self._broker_seen = time.monotonic()
        self._send(self._ready())

    def _ready(self) -> Ready:
        """Hello to the broker, claiming every address this node hosts.

        ``held`` re-claims the addresses whose lease is still valid, at their epochs.
        """
        self._ready_sent = now = time.monotonic()
        valid = now < self._lease_until
        return Ready(
            node_id=self.node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            addresses=sorted(self._factories),
            held=dict(self._epochs) if valid else {},
            previous=dict(self._suspended),
            seq=self._next_seq(),
        )

    def _next_seq(self) -> int:
        """A sequence number for a packet the broker acknowledges; its send time is kept."""
        seq = next(self._seq)
        now = self._sent_at[seq] = time.monotonic()
        if len(self._sent_at) > _SENT_KEPT:
            # The broker is away: an ack of a packet older than a lease would renew nothing.
            for old in [s for s, sent in self._sent_at.items() if sent < now - self._lease_s]:
                del self._sent_at[old]
        return seq

    def _on_disconnect(self) -> None:
        """The broker does not know this node: say hello again, once per interval.

        Heartbeats queued while the broker was away arrive together; each is answered
        ``Disconnect``, and one ``Ready`` answers them all.
        """
        now = time.monotonic()
        if now - self._ready_sent < self.options.heartbeat_interval_s:
            return
        self._log.info("broker does not know this node (restarted?); registering again")
        self._send(self._ready())

    def _on_ack(self, ack: int) -> None:
        """The broker had packet ``ack``: the lease lasts from its sending."""
        sent = self._sent_at.get(ack)
        if sent is None:
            return
        self._lease_until = max(self._lease_until, sent + self._lease_s)
        for seq in [s for s in self._sent_at if s <= ack]:
            del self._sent_at[seq]

    def _send(self, packet: object) -> None:
        """Send to the broker without blocking; a failure is counted and logged once."""
        assert self._dealer is not None
        try:
            self._dealer.send(encode_packet(packet), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._dropped(type(packet).__name__, exc)
        else:
            self._send_failing = False

    def _dropped(self, what: str, exc: zmq.ZMQError) -> None:
        self.dropped_sends += 1
        if not self._send_failing:
            self._send_failing = True
            self._log.info("broker cannot take packets now, dropped", what=what, error=str(exc))

    def _loop(self) -> None:
        assert self._pull is not None and self._monitor is not None
        interval = self.options.heartbeat_interval_s
        next_beat = time.monotonic() + interval
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            wake = min(next_beat, self._next_deadline(), self._lease_check_time())
            ready = dict(poller.poll(max(0.0, wake - time.monotonic()) * 1000))
            if self._pull in ready and not self._drain_pull():
                self._shutdown()
                return
            if self._monitor in ready:
                self._link.read(self._monitor)
            if self._dealer in ready:
                self._drain_broker()
            now = time.monotonic()
            self._check_lease(now)
            if now >= next_beat:
                next_beat = now + interval
                self._send(Heartbeat(actors=self.actors(), seq=self._next_seq()))
                self._retry_claims(now)
                self._report_silence(now)
            self._expire(time.time())

    def _lease_check_time(self) -> float:
        return self._lease_until if self._epochs else float("inf")

    def _check_lease(self, now: float) -> None:
        """Stop every hosted actor once the lease ran out (the broker may move them on)."""
        if not self._epochs or now < self._lease_until:
            return
        addresses = sorted(self._epochs)
        self._log.warning(
            "lease expired, actors stopped until the broker confirms the grant",
            addresses=addresses,
            silent_s=round(now - self._broker_seen, 3),
        )
        for address in addresses:
            self._suspended[address] = self._epochs[address]
            self._stop_hosting(address, "its node lost its lease")

    def _report_silence(self, now: float) -> None:
        """Say once per outage that the broker is silent, naming the likely cause."""
        silent = now - self._broker_seen
        if silent > self._lease_s and self._link.report():
            self._log.warning(
                "broker unreachable",
                broker=self.options.broker,
                silent_s=round(silent, 1),
                cause=self._link.cause(),
            )

    def _next_deadline(self) -> float:
        """The monotonic time of the earliest request deadline (inf if none)."""
        heads = [h[0][0] for h in (self._deadlines, self._outbound_deadlines) if h]
        if not heads:
            return float("inf")
        return time.monotonic() + (min(heads) - time.time())

    def _drain_pull(self) -> bool:
        """Forward what actors and API calls queued; False when told to stop."""
        assert self._pull is not None and self._dealer is not None
        pull, dealer = self._pull, self._dealer
        while pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frame = pull.recv()
            kind = frame[0]
            if kind == _REQUEST:
                (deadline,) = _DEADLINE.unpack_from(frame, 1)
                end = 10 + frame[9]
                heapq.heappush(self._outbound_deadlines, (deadline, frame[10:end].decode()))
                try:
                    dealer.send(frame[end:], zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    self._dropped("request", exc)  # its asker gets Timeout at the deadline
            elif kind == _CLAIM:
                self._send(Claim(address=frame[1:].decode(), seq=self._next_seq()))
            elif kind == _RELEASE_ALL:
                for address in list(self._epochs):
                    self._send(Release(address=address))
                self._released.set()
            elif kind == _STOP:
                return False
        return True

    def _drain_broker(self) -> None:
        assert self._dealer is not None
        dealer = self._dealer
        while dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frame = dealer.recv()
            if self._link.answered():
                self._log.info("broker reachable again", broker=self.options.broker)
            self._broker_seen = time.monotonic()
            try:
                packet = decode_packet(frame, self.options.max_frame_bytes)
            except FrameError as exc:
                self._bad_frame(reason=exc.reason)
                continue
            if isinstance(packet, Envelope):
                self._on_envelope(packet)
            elif isinstance(packet, Heartbeat):
                self._on_ack(packet.ack)
            elif isinstance(packet, Granted):
                self._on_ack(packet.ack)
                self._on_granted(packet)
            elif isinstance(packet, Refused):
                self._on_refused(packet)
            elif isinstance(packet, Revoked):
                self._on_revoked(packet)
            elif isinstance(packet, Disconnect):
                self._on_disconnect()

    def _on_envelope(self, envelope: Envelope) -> None:
        if envelope.reply_to:
            with self._outbound_lock:
                future = self._outbound.pop(envelope.reply_to, None)
            if future is not None:
                future.set_result(_open_reply(envelope))
            return
        mailbox = self._mailboxes.get(envelope.target)
        if mailbox is not None and time.monotonic() >= self._lease_until:
            mailbox = None  # its lease ran out (a frozen node): stopped right after this
        if mailbox is None:
            self._refuse(
                envelope,
                errors.NoSuchAddress(
                    address=envelope.target,
                    message=f"{envelope.target} is not hosted by node {self.node_id}",
                ),
            )
        elif envelope.expired():
            self._refuse(envelope, errors.Timeout(message="deadline passed before delivery"))
        elif mailbox.depth >= mailbox.capacity:
            self._refuse(
                envelope,
                errors.Busy(message=f"mailbox of {envelope.target} is full ({mailbox.capacity})"),
            )
        elif envelope.id in self._pending:
            self._refuse(envelope, errors.BadRequest(message=f"duplicate request id {envelope.id}"))
        elif len(envelope.id.encode()) > MAX_REQUEST_ID:
            message = f"request id longer than {MAX_REQUEST_ID} bytes"
            self._refuse(envelope, errors.BadRequest(message=message))
        else:
            if not envelope.deadline:
                envelope.deadline = time.time() + self.options.request_timeout_s
            self._pending[envelope.id] = envelope
            heapq.heappush(self._deadlines, (envelope.deadline, envelope.id))
            if len(self._deadlines) > 2 * len(self._pending) + _DEADLINES_SLACK:
                self._prune_deadlines()
            mailbox.tell(envelope)

    def _prune_deadlines(self) -> None:
        """Drop the deadlines of answered requests, so memory follows what is pending."""
        # list() copies in one step: actor threads pop answered entries concurrently.
        pending = list(self._pending.items())
        self._deadlines = [(env.deadline, request_id) for request_id, env in pending]
        heapq.heapify(self._deadlines)

    def _refuse(self, envelope: Envelope, error: errors.Error) -> None:
        """Answer a request on the node's behalf (the actor never saw it)."""
        self._send(envelope.answer(pack_body(error), sender=self.node_id))

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._deadlines)
            pending = self._pending.pop(request_id, None)
            if pending is not None:
                self._refuse(
                    pending,
                    errors.Timeout(message=f"{pending.target} did not answer before the deadline"),
                )
        while self._outbound_deadlines and self._outbound_deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._outbound_deadlines)
            with self._outbound_lock:
                future = self._outbound.pop(request_id, None)
            if future is not None:
                future.set_result(errors.Timeout(message="no reply before the deadline"))

    def _on_granted(self, granted: Granted) -> None:
        address = granted.address
        factory = self._factories.get(address)
        if factory is None:
            self._send(Release(address=address))
            return
        if time.monotonic() >= self._lease_until:
            self._suspended[address] = granted.epoch  # claimed again once the lease is renewed
            return
        self._suspended.pop(address, None)
        # A re-claim (same epoch, actor running), not a new grant: no new line.
        renewed = self._epochs.get(address) == granted.epoch and address in self._mailboxes
        self._epochs[address] = granted.epoch
        if self._refusals.pop(address, None) is not None:
            self._log.info("address taken over", address=address, epoch=granted.epoch)
        mailbox = self._mailboxes.get(address)
        if mailbox is None:
            mailbox = Mailbox(
                address,
                factory,
                self,
                self.options.restart_policy,
                self.options.mailbox_size,
                epoch=granted.epoch,
            )
            self._mailboxes[address] = mailbox
        mailbox.ctx.epoch = granted.epoch
        if not renewed:
            self._log.info("hosting address", address=address, epoch=granted.epoch)
        with self._decided:
            self._decided.notify_all()

    def _on_refused(self, refused: Refused) -> None:
        address = refused.address
        owner = refused.owner
        if address == f"{NODE_PREFIX}{self.node_id}":
            self._on_node_refused(refused)
            return
        self._suspended.pop(address, None)
        first = address not in self._refusals
        self._refusals[address] = errors.NotOwner(
            address=address,
            owner=owner,
            message=(
                f"{address} is owned by node {owner.node_id} "
                f"(host {owner.host}, pid {owner.pid}, epoch {owner.epoch})"
            ),
        )
        if address in self._mailboxes:
            self._stop_hosting(address, "another node owns it")
        if first:
            # What a standby expects (it waits for the address); a surprise otherwise.
            report = self._log.info if self.options.standby else self._log.error
            report(
                "address refused",
                address=address,
                owner=owner.node_id,
                host=owner.host,
                pid=owner.pid,
            )
        with self._decided:
            self._decided.notify_all()

    def _on_node_refused(self, refused: Refused) -> None:
        """Another process runs with this node id: give up, unless it is our dead predecessor."""
        owner = refused.owner
        if owner.host == socket.gethostname() and not _pid_alive(owner.pid):
            if self._node_refusal is None:
                self._log.info(
                    "a dead process of this node id still holds its lease; waiting for it",
                    pid=owner.pid,
                )
            return  # our heartbeats get Disconnect, so Ready goes out again each interval
        self._node_refusal = errors.NotOwner(
            address=refused.address, owner=owner, message=refused.reason
        )
        self._log.error("node id in use", running_pid=owner.pid, running_host=owner.host)
        with self._decided:
            self._decided.notify_all()

    def _on_revoked(self, revoked: Revoked) -> None:
        if self._epochs.get(revoked.address) != revoked.epoch:
            return
        self._log.warning("address revoked", address=revoked.address, epoch=revoked.epoch)
        self._stop_hosting(revoked.address, "its grant was revoked")
        if self.options.standby:
            self._send(Claim(address=revoked.address, seq=self._next_seq()))

    def _stop_hosting(self, address: str, why: str) -> None:
        """Stop an actor whose address we may no longer own, at once.

        Its queued requests are answered ``Unavailable`` by the node (not by the actor,
        whose epoch may be stale); the actor skips them and stops.
        """
        self._epochs.pop(address, None)
        self._bus.forget(address)
        mailbox = self._mailboxes.pop(address, None)
        if mailbox is None:
            return
        mailbox.abandon()
        for request_id, pending in list(self._pending.items()):
            if pending.target == address and self._pending.pop(request_id, None) is not None:
                self._refuse(pending, errors.Unavailable(message=f"{address} stopped: {why}"))

    def _retry_claims(self, now: float) -> None:
        """Claim again what a standby was refused and what a lost lease stopped."""
        if now >= self._lease_until:
            return
        retry = dict(self._suspended)
        if self.options.standby:
            retry.update((address, 0) for address in self._refusals)
        for address, previous in sorted(retry.items()):
            self._send(Claim(address=address, seq=self._next_seq(), previous=previous))

    def _shutdown(self) -> None:
        """Answer what is still pending, say goodbye, close the I/O thread's sockets."""
        for pending in list(self._pending.values()):
            self._refuse(pending, errors.Unavailable(message="node is stopping"))
        self._pending.clear()
        with self._outbound_lock:
            for future in self._outbound.values():
                future.set_result(errors.Unavailable(message="node is stopping"))
            self._outbound.clear()
        self._send(Disconnect())
        assert self._dealer is not None and self._pull is not None
        if self._monitor is not None:
            self._dealer.disable_monitor()
            self._monitor.close(linger=0)
        self._dealer.close(linger=1000)
        self._pull.close(linger=0)


def _too_big(size: int, options: NodeOptions, what: str = "request") -> str:
    return f"{what} of {size} bytes exceeds max_frame_bytes ({options.max_frame_bytes})"


def _pid_alive(pid: int) -> bool:
    """Does a process with this pid run on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Link:
    """What the broker socket's monitor said: why a broker may not be answering."""

    def __init__(self) -> None:
        self.events: set[int] = set()
        self._reported = False

    def read(self, monitor: zmq.Socket) -> None:
        while monitor.poll(0):
            event = monitor.recv_multipart()
            (kind,) = struct.unpack_from("=H", event[0])
            self.events.add(kind)

    def answered(self) -> bool:
        """The broker answered: forget the outage; True if one had been reported."""
        reported, self._reported = self._reported, False
        self.events.clear()
        return reported

    def report(self) -> bool:
        """True the first time an outage is to be reported."""
        reported, self._reported = self._reported, True
        return not reported

    def cause(self) -> str:
        """The likely cause of a broker that does not answer, for an operator."""
        failed = {
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            zmq.EVENT_HANDSHAKE_FAILED_AUTH,
        }
        if self.events & failed or (
            zmq.EVENT_CONNECTED in self.events
            and zmq.EVENT_HANDSHAKE_SUCCEEDED not in self.events
            and zmq.EVENT_DISCONNECTED in self.events
        ):
            return (
                "a connection opens but its handshake fails: the broker's CURVE key "
                "(runtime.curve_server_key) does not match, or only one side uses CURVE"
            )
        if zmq.EVENT_HANDSHAKE_SUCCEEDED in self.events:
            return "connected, but the broker does not answer (overloaded or not a broker)"
        if zmq.EVENT_CONNECT_RETRIED in self.events:
            return f"nothing accepts connections there; {NO_BROKER_ADVICE}"
        return NO_BROKER_ADVICE


def _open_reply(envelope: Envelope) -> Message:
    try:
        return open_body(envelope.body)
    except FrameError as exc:
        return errors.BadRequest(message=f"unreadable reply: {exc.reason}")


class _ThreadSockets:
    """One PUSH (to the node's I/O thread) and one PUB (to the bus) per calling thread."""

    def __init__(
        self,
        context: zmq.Context,
        pull_endpoint: str,
        events_endpoint: str,
        broker_endpoint: str,
        node_id: str,
        curve_server_key: str | None,
    ) -> None:
        self._zmq = context
        self._curve_server_key = curve_server_key
        self._pull_endpoint = pull_endpoint
        self._events_endpoint = events_endpoint
        self._broker_endpoint = broker_endpoint
        self._node_id = node_id
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, zmq.Socket]] = []  # (owner, socket)
        self._lock = threading.Lock()
        self._dealers = itertools.count(1)
        self.prefix = node_id  # the node's socket identity, set by the node

    def to_io(self, frame: bytes) -> bool:
        """Hand a frame to the node's I/O thread; False if its pipe stayed full (bounded)."""
        try:
            self.push().send(frame)
        except zmq.Again:
            log.warning("node I/O thread not keeping up, frame dropped", kind=chr(frame[0]))
            return False
        return True

    def dealer(self) -> zmq.Socket:
        """This thread's own socket to the broker, ``<node socket>~<n>`` (replies only)."""
        sock = getattr(self._local, "dealer", None)
        if sock is None:
            with self._lock:
                name = f"{self.prefix}{SUBSOCKET_SEPARATOR.decode()}{next(self._dealers)}"
            sock = self._zmq.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, name.encode())
            # It never reads: the broker sends nothing to it.
            sock.setsockopt(zmq.RCVHWM, 1)
            sock.setsockopt(zmq.LINGER, 1000)
            curve.dial(sock, self._curve_server_key)
            sock.connect(self._broker_endpoint)
            with self._lock:
                self._all.append((threading.current_thread(), sock))
            self._local.dealer = sock
        return sock

    def push(self) -> zmq.Socket:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._open(zmq.PUSH, self._pull_endpoint)
            sock.setsockopt(zmq.SNDTIMEO, _PIPE_SEND_TIMEOUT_MS)
            self._local.push = sock
        return sock

    def pub(self) -> zmq.Socket:
        sock = getattr(self._local, "pub", None)
        if sock is None:
            # A publisher drops everything until the bus's subscriptions reach it, and a
            # new socket has none: its first events (a node's first session states, the
            # posts caught up right after a restart) would be lost. An XPUB sees the
            # subscriptions arrive (the broker's XSUB sends them all on connect), so wait
            # for them, bounded for a bus nobody subscribes to.
            sock = self._open(zmq.XPUB, self._events_endpoint, self._curve_server_key)
            if sock.poll(_BUS_JOIN_TIMEOUT_MS):
                while sock.poll(0):
                    sock.recv()
            self._local.pub = sock
        return sock

    def _open(self, kind: int, endpoint: str, curve_server_key: str | None = None) -> zmq.Socket:
        sock = self._zmq.socket(kind)
        sock.setsockopt(zmq.LINGER, 1000)
        curve.dial(sock, curve_server_key)
        sock.connect(endpoint)
        with self._lock:
            self._all.append((threading.current_thread(), sock))
        return sock

    def close_all(self) -> None:
        """Close the sockets of this thread and of every thread that has ended.

        A socket whose thread still runs (the asyncio loop thread outlives a node) is left
        open: closing a ZeroMQ socket while its own thread may be sending on it makes
        libzmq abort the process. It goes with the process.
        """
        me = threading.current_thread()
        with self._lock:
            kept = [(t, sock) for t, sock in self._all if t is not me and t.is_alive()]
            for owner, sock in self._all:
                if owner is me or not owner.is_alive():
                    sock.close()
            self._all = kept
        self._local = threading.local()
