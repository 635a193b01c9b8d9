"""Every thread's own sockets of a node: the pipe to its I/O thread, replies, the bus.

A ZeroMQ socket must be used by one thread only. Each thread that talks through a node
gets, on first use, its own PUSH to the node's I/O thread (:meth:`ThreadSockets.to_io`),
its own DEALER to the broker for replies (:meth:`ThreadSockets.dealer`) and its own
publisher on the bus (:meth:`ThreadSockets.pub`). Guarantees: a hand-off to the I/O
thread is bounded in time (``False`` when its pipe stayed full); a new publisher waits,
bounded, for the bus's subscriptions before its first event; :meth:`close_all` never
closes a socket whose thread may still use it.

The pipe carries one frame per message (pyzmq's multipart calls cost several times a
plain send): a kind byte, then its fields.
"""

from __future__ import annotations

import itertools
import threading

import structlog
import zmq

from runtime import curve
from runtime.router import SUBSOCKET_SEPARATOR

log = structlog.get_logger("node")

# The kinds of frame on the pipe to the I/O thread.
REQUEST = ord("q")  # deadline (8-byte double), id length (1 byte), id, packet
CLAIM = ord("c")  # address
RELEASE_ALL = ord("R")
STOP = ord("S")

# How long a thread's new publisher waits for the bus's subscriptions to reach it.
_BUS_JOIN_TIMEOUT_MS = 500
# Bound on a send from another thread to the I/O thread (its pipe holds 1000 frames).
_PIPE_SEND_TIMEOUT_MS = 2000


class ThreadSockets:
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
