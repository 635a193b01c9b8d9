"""A node: one process's host for actors, connected to the broker.

The node's I/O thread is the only user of its broker socket (:mod:`runtime.link`). Actor
threads reach it through thread-local inproc PUSH sockets (:mod:`runtime.thread_sockets`),
so every ZeroMQ socket is used by exactly one thread. Like the broker, the I/O thread is
one poll loop that dispatches by packet type to small parts: the addresses hosted
(:mod:`runtime.hosting`), the lease (:mod:`runtime.node_lease`) and the requests in
flight (:mod:`runtime.inflight`), each stating its own guarantees.

Guarantees, beyond those of its parts:

* an actor runs only at an address the broker granted this node, while the node's lease
  is valid (:mod:`runtime.hosting`);
* after a broker restart the node re-claims what it holds with its epochs and keeps its
  actors running, if the broker is back within the lease;
* the node is its id plus a random instance: a second process with the same id is
  refused (:class:`AddressTakenError` naming the running one), and nobody else can speak
  on its connection;
* no send blocks; a broker that cannot be reached is reported with its likely cause
  within the lease duration (:mod:`runtime.link`);
* every request taken from the broker gets exactly one reply (:mod:`runtime.inflight`);
* :meth:`Node.stop` releases the addresses, drains the mailboxes, forwards their replies,
  says goodbye and closes every socket; it does not hang.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import socket
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
    ActorInfo,
    Claim,
    Disconnect,
    Granted,
    Heartbeat,
    Refused,
    Release,
    Revoked,
    lease_bounds,
)
from protocols.codec import DEFAULT_MAX_FRAME_BYTES, FrameError, decode_packet, encode_packet
from protocols.envelope import Envelope
from runtime.actor import ActorFactory
from runtime.bus import BusListener
from runtime.errors import AddressTakenError, BrokerUnreachableError
from runtime.hosting import Hosting
from runtime.inflight import Inflight
from runtime.link import BrokerLink
from runtime.logging import LogThrottle
from runtime.node_lease import NodeLease
from runtime.router import SUBSOCKET_SEPARATOR
from runtime.supervisor import RestartPolicy
from runtime.thread_sockets import CLAIM, RELEASE_ALL, REQUEST, STOP, ThreadSockets

log = structlog.get_logger("node")


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
        self._released = threading.Event()
        self._pull_endpoint = f"inproc://switchboard-node-{id(self):x}"
        if SUBSOCKET_SEPARATOR.decode() in self.node_id:
            raise ValueError(f"a node id may not contain {SUBSOCKET_SEPARATOR.decode()!r}")
        self._threads = ThreadSockets(
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
        self._pull: zmq.Socket | None = None
        # Random per process, never shown: the broker knows this process by it, and no
        # other peer can guess the socket identity to speak on this node's connection.
        self._identity = f"{self.node_id}{SUBSOCKET_SEPARATOR.decode()}{secrets.token_hex(8)}"
        self._threads.prefix = self._identity
        self._ready_sent = 0.0
        self._log = log.bind(node=self.node_id)
        self._bad_frame = LogThrottle(self._log, "dropped bad frame from broker")
        self._link = BrokerLink(options.broker, self._log)
        lease_s, _ = lease_bounds(options.heartbeat_interval_s, options.heartbeat_liveness)
        self._lease = NodeLease(lease_s)
        self._inflight = Inflight(
            self.node_id,
            self._link,
            self._threads,
            max_frame_bytes=options.max_frame_bytes,
            request_timeout_s=options.request_timeout_s,
        )
        self._hosting = Hosting(
            self.node_id,
            options,
            self,
            link=self._link,
            lease=self._lease,
            inflight=self._inflight,
            bus=self._bus,
            log=self._log,
        )

    # -- public API ---------------------------------------------------------------

    @property
    def dropped_sends(self) -> int:
        """Packets to the broker dropped because it could not take them at the time."""
        return self._link.dropped_sends

    def add(self, address: str, factory: ActorFactory) -> None:
        """Host an actor at ``address``; claimed from the broker now if running.

        Raises ValueError if this node already hosts that address.
        """
        self._hosting.add(address, factory)
        if self._running:
            self._threads.to_io(bytes([CLAIM]) + address.encode())

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
        hosting = self._hosting
        if not self.wait_decided(hosting.factories, timeout):
            raise BrokerUnreachableError(self.options.broker, timeout, self._link.cause())
        if hosting.node_refusal is not None:
            raise AddressTakenError(hosting.node_refusal)
        if hosting.refusals and not self.options.standby:
            raise AddressTakenError(next(iter(hosting.refusals.values())))

    def wait_decided(self, addresses: Iterable[str], timeout: float) -> bool:
        """Wait until each address is granted or refused (or the node is); False on timeout."""
        return self._hosting.wait_decided(addresses, timeout)

    def wait_granted(self, address: str, timeout: float) -> bool:
        """Wait until ``address`` is granted to this node (a standby's takeover)."""
        return self._hosting.wait_granted(address, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Release addresses, drain mailboxes, say goodbye and close sockets (idempotent)."""
        if not self._running:
            return
        self._threads.to_io(bytes([RELEASE_ALL]))
        self._released.wait(timeout)
        deadline = time.monotonic() + timeout
        mailboxes = self._hosting.mailboxes
        for mailbox in list(mailboxes.values()):
            mailbox.stopping.set()
        for mailbox in list(mailboxes.values()):
            try:
                mailbox.stop(timeout=max(0.1, deadline - time.monotonic()))
            except pykka.Timeout:
                self._log.warning("mailbox did not drain in time", address=mailbox.address)
        self._threads.to_io(bytes([STOP]))
        if self._thread is not None:
            self._thread.join(timeout)
        self._bus.stop()
        self._threads.close_all()
        self._running = False

    def actors(self) -> list[ActorInfo]:
        """The hosted actors as status shows them (any thread)."""
        return [mb.info() for mb in list(self._hosting.mailboxes.values())]

    def refusal(self, address: str) -> errors.NotOwner | None:
        """Why the broker refused ``address`` to this node, if it did."""
        return self._hosting.refusals.get(address)

    def epoch(self, address: str) -> int | None:
        """The fencing epoch of this node's grant for ``address``, if granted."""
        return self._hosting.epochs.get(address)

    # -- Port (called from actor threads) -------------------------------------------

    def send_request(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        return self._inflight.ask(envelope)

    def send_reply(self, envelope: Envelope) -> None:
        # Exactly one answer per request: whoever pops the pending entry first, this
        # reply or the I/O thread's Timeout, sends.
        self._inflight.reply(envelope, self._hosting.epochs)

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
        mailbox = self._hosting.mailboxes.get(address)
        if mailbox is not None and not mailbox.deliver(topic, event):
            dropped = mailbox.events_dropped
            if dropped == 1 or dropped % 1000 == 0:
                self._log.warning(
                    "mailbox full, bus event dropped", address=address, dropped=dropped
                )

    # -- the I/O thread -------------------------------------------------------------

    def _connect(self) -> None:
        """Open the one socket to the broker (for the node's life) and say hello."""
        self._link.connect(
            self._zmq,
            self._identity,
            max_frame_bytes=self.options.max_frame_bytes,
            heartbeat_interval_s=self.options.heartbeat_interval_s,
            lease_s=self._lease.lease_s,
            curve_server_key=self.options.curve_server_key,
        )
        self._hello()

    def _hello(self) -> None:
        """Say Ready to the broker, claiming every address this node hosts."""
        self._ready_sent = now = time.monotonic()
        self._link.send(self._hosting.ready(now))

    def _on_disconnect(self) -> None:
        """The broker does not know this node: say hello again, once per interval.

        Heartbeats queued while the broker was away arrive together; each is answered
        ``Disconnect``, and one ``Ready`` answers them all.
        """
        now = time.monotonic()
        if now - self._ready_sent < self.options.heartbeat_interval_s:
            return
        self._log.info("broker does not know this node (restarted?); registering again")
        self._hello()

    def _loop(self) -> None:
        link, hosting, inflight = self._link, self._hosting, self._inflight
        assert self._pull is not None and link.monitor is not None
        interval = self.options.heartbeat_interval_s
        next_beat = time.monotonic() + interval
        poller = zmq.Poller()
        poller.register(link.dealer, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        poller.register(link.monitor, zmq.POLLIN)
        while True:
            wake = min(next_beat, inflight.next_deadline(), hosting.lease_check_time())
            ready = dict(poller.poll(max(0.0, wake - time.monotonic()) * 1000))
            if self._pull in ready and not self._drain_pull():
                self._shutdown()
                return
            if link.monitor in ready:
                link.read_monitor()
            if link.dealer in ready:
                self._drain_broker()
            now = time.monotonic()
            hosting.check_lease(now)
            if now >= next_beat:
                next_beat = now + interval
                link.send(Heartbeat(actors=self.actors(), seq=self._lease.next_seq()))
                hosting.retry_claims(now)
                link.report_silence(now, self._lease.lease_s)
            inflight.expire(time.time())

    def _drain_pull(self) -> bool:
        """Forward what actors and API calls queued; False when told to stop."""
        assert self._pull is not None
        pull = self._pull
        while pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frame = pull.recv()
            kind = frame[0]
            if kind == REQUEST:
                self._inflight.forward(frame)
            elif kind == CLAIM:
                self._link.send(Claim(address=frame[1:].decode(), seq=self._lease.next_seq()))
            elif kind == RELEASE_ALL:
                for address in list(self._hosting.epochs):
                    self._link.send(Release(address=address))
                self._released.set()
            elif kind == STOP:
                return False
        return True

    def _drain_broker(self) -> None:
        dealer = self._link.dealer
        assert dealer is not None
        while dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frame = dealer.recv()
            self._link.heard()
            try:
                packet = decode_packet(frame, self.options.max_frame_bytes)
            except FrameError as exc:
                self._bad_frame(reason=exc.reason)
                continue
            if isinstance(packet, Envelope):
                self._on_envelope(packet)
            elif isinstance(packet, Heartbeat):
                self._lease.acknowledged(packet.ack)
            elif isinstance(packet, Granted):
                self._lease.acknowledged(packet.ack)
                self._hosting.granted(packet)
            elif isinstance(packet, Refused):
                self._hosting.refused(packet)
            elif isinstance(packet, Revoked):
                self._hosting.revoked(packet)
            elif isinstance(packet, Disconnect):
                self._on_disconnect()

    def _on_envelope(self, envelope: Envelope) -> None:
        if envelope.reply_to:
            self._inflight.resolve(envelope)
            return
        mailbox = self._hosting.mailboxes.get(envelope.target)
        if mailbox is not None and not self._lease.valid(time.monotonic()):
            mailbox = None  # its lease ran out (a frozen node): stopped right after this
        self._inflight.take(envelope, mailbox)

    def _shutdown(self) -> None:
        """Answer what is still pending, say goodbye, close the I/O thread's sockets."""
        self._inflight.close()
        self._link.send(Disconnect())
        assert self._pull is not None
        self._link.close()
        self._pull.close(linger=0)
