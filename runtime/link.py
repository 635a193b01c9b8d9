"""A node's link to the broker: one DEALER for the node's life, and what its monitor says.

Guarantees:

* **One connection, kept.** The socket is opened once (:meth:`BrokerLink.connect`);
  ZeroMQ reconnects it by itself (to a restarted broker too), and ZMTP heartbeats drop a
  connection that went silent, so a half-open one does not linger.
* **No send blocks.** A packet the broker cannot take now is dropped and counted
  (:attr:`BrokerLink.dropped_sends`), logged once until a packet of the I/O thread's
  goes through again; the lease covers the loss.
* **An outage is explained.** A broker silent for a lease is reported once per outage
  with its likely cause (nothing listening, CURVE key mismatch), and its return logged.

The I/O thread is the only user of the socket; actor threads' reply sockets
(:mod:`runtime.thread_sockets`) count their failed sends here too.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import zmq

from protocols.codec import encode_packet
from runtime import curve
from runtime.errors import NO_BROKER_ADVICE

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
_HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


class BrokerLink:
    """The node's socket to the broker at ``endpoint`` (I/O thread only, but
    :meth:`dropped`); ``log`` is the node's bound logger."""

    def __init__(self, endpoint: str, log: Any) -> None:
        self.endpoint = endpoint
        self.dealer: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.dropped_sends = 0
        # When the broker was last heard (monotonic).
        self.seen = 0.0
        self._log = log
        self._send_failing = False
        self._events: set[int] = set()
        self._reported = False

    def connect(
        self,
        context: zmq.Context,
        identity: str,
        *,
        max_frame_bytes: int,
        heartbeat_interval_s: float,
        lease_s: float,
        curve_server_key: str | None,
    ) -> None:
        """Open the one socket to the broker (for the node's life) as ``identity``."""
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, identity.encode())
        dealer.setsockopt(zmq.LINGER, 1000)
        dealer.setsockopt(zmq.MAXMSGSIZE, 4 * max_frame_bytes)
        interval_ms = max(1, int(heartbeat_interval_s * 1000))
        dealer.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(interval_ms, int(lease_s * 1000)))
        curve.dial(dealer, curve_server_key)
        self.monitor = dealer.get_monitor_socket(_MONITORED)
        dealer.connect(self.endpoint)
        self.dealer = dealer
        self.seen = time.monotonic()

    def send(self, packet: object) -> None:
        """Send to the broker without blocking; a failure is counted and logged once."""
        assert self.dealer is not None
        try:
            self.dealer.send(encode_packet(packet), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.dropped(type(packet).__name__, exc)
        else:
            self._send_failing = False

    def forward(self, packet: bytes, what: str) -> None:
        """Send an encoded packet without blocking; a failure is counted and logged once."""
        assert self.dealer is not None
        try:
            self.dealer.send(packet, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.dropped(what, exc)

    def dropped(self, what: str, exc: zmq.ZMQError) -> None:
        """Count a send the broker could not take (from any thread)."""
        self.dropped_sends += 1
        if not self._send_failing:
            self._send_failing = True
            self._log.info("broker cannot take packets now, dropped", what=what, error=str(exc))

    def heard(self) -> None:
        """A packet came from the broker: it is reachable (logged if an outage was)."""
        reported, self._reported = self._reported, False
        self._events.clear()
        if reported:
            self._log.info("broker reachable again", broker=self.endpoint)
        self.seen = time.monotonic()

    def read_monitor(self) -> None:
        """Take in what the socket's monitor reported."""
        assert self.monitor is not None
        while self.monitor.poll(0):
            event = self.monitor.recv_multipart()
            (kind,) = struct.unpack_from("=H", event[0])
            self._events.add(kind)

    def report_silence(self, now: float, lease_s: float) -> None:
        """Say once per outage that the broker is silent, naming the likely cause."""
        silent = now - self.seen
        if silent > lease_s and not self._reported:
            self._reported = True
            self._log.warning(
                "broker unreachable",
                broker=self.endpoint,
                silent_s=round(silent, 1),
                cause=self.cause(),
            )

    def cause(self) -> str:
        """The likely cause of a broker that does not answer, for an operator."""
        events = self._events
        if events & _HANDSHAKE_FAILED or (
            zmq.EVENT_CONNECTED in events
            and zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
            and zmq.EVENT_DISCONNECTED in events
        ):
            return (
                "a connection opens but its handshake fails: the broker's CURVE key "
                "(runtime.curve_server_key) does not match, or only one side uses CURVE"
            )
        if zmq.EVENT_HANDSHAKE_SUCCEEDED in events:
            return "connected, but the broker does not answer (overloaded or not a broker)"
        if zmq.EVENT_CONNECT_RETRIED in events:
            return f"nothing accepts connections there; {NO_BROKER_ADVICE}"
        return NO_BROKER_ADVICE

    def close(self) -> None:
        """Close the monitor and the socket (queued packets get a second to leave)."""
        assert self.dealer is not None
        if self.monitor is not None:
            self.dealer.disable_monitor()
            self.monitor.close(linger=0)
        self.dealer.close(linger=1000)
