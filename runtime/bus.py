"""A node's listener on the event bus: bus events into the mailboxes that subscribed.

One thread per node owns one SUB socket on the broker's XPUB. Actors subscribe by topic
prefix (:meth:`BusListener.subscribe`, from any thread); each event whose topic starts
with one of an address's prefixes is handed to that address, once, in bus order. The
bus is at most once: an event published before a subscription reached the broker, or
while this node was away, is never seen here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
import zmq

from protocols.base import Message
from protocols.codec import DEFAULT_MAX_FRAME_BYTES, FrameError, decode_event
from runtime import curve

__all__ = ["BusListener"]

log = structlog.get_logger("bus")

Deliver = Callable[[str, str, Message], None]
"""``deliver(address, topic, event)``: called on the listener's thread."""

_SUBSCRIBE = b"+"
_FORGET = b"-"
_STOP = b"S"


class BusListener:
    """Feeds bus events to subscribed addresses; start lazily, stop once."""

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        deliver: Deliver,
        *,
        curve_server_key: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._zmq = context
        self._endpoint = endpoint
        self._deliver = deliver
        self._curve_server_key = curve_server_key
        self._max_frame_bytes = max_frame_bytes
        self._control = f"inproc://switchboard-bus-{id(self):x}"
        self._local = threading.local()
        self._sockets: list[tuple[threading.Thread, zmq.Socket]] = []  # (owner, socket)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def subscribe(self, address: str, prefix: str) -> None:
        """Deliver events whose topic starts with ``prefix`` to ``address`` (any thread)."""
        self._start()
        self._push().send_multipart([_SUBSCRIBE, address.encode(), prefix.encode()])

    def forget(self, address: str) -> None:
        """Deliver nothing more to ``address`` (any thread); a no-op if never started."""
        if self._thread is not None:
            self._push().send_multipart([_FORGET, address.encode()])

    def stop(self) -> None:
        """Stop the thread (call once, after the actors stopped).

        Closes the control sockets of this thread and of threads that have ended; one
        whose thread still runs goes with the process (closing it under a send of its
        own thread would abort libzmq).
        """
        if self._thread is not None:
            self._push().send(_STOP)
            self._thread.join(5.0)
        me = threading.current_thread()
        with self._lock:
            for owner, sock in self._sockets:
                if owner is me or not owner.is_alive():
                    sock.close(linger=0)
            self._sockets = [(t, s) for t, s in self._sockets if t is not me and t.is_alive()]

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="node-bus", daemon=True)
            self._thread.start()
        self._ready.wait()

    def _push(self) -> zmq.Socket:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._zmq.socket(zmq.PUSH)
            sock.connect(self._control)
            with self._lock:
                self._sockets.append((threading.current_thread(), sock))
            self._local.push = sock
        return sock

    def _run(self) -> None:
        control = self._zmq.socket(zmq.PULL)
        control.bind(self._control)
        sub = self._zmq.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        curve.dial(sub, self._curve_server_key)
        sub.connect(self._endpoint)
        self._ready.set()
        routes: dict[str, set[str]] = {}  # prefix -> addresses
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(sub, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if control in ready and not self._steer(control, sub, routes):
                    return
                if sub in ready:
                    self._drain(sub, routes)
        finally:
            control.close(linger=0)
            sub.close(linger=0)

    def _steer(self, control: zmq.Socket, sub: zmq.Socket, routes: dict[str, set[str]]) -> bool:
        """Apply queued subscription changes; False when asked to stop."""
        while control.poll(0):
            kind, *args = control.recv_multipart()
            if kind == _STOP:
                return False
            address = args[0].decode()
            if kind == _SUBSCRIBE:
                prefix = args[1].decode()
                if prefix not in routes:
                    sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
                routes.setdefault(prefix, set()).add(address)
                continue
            for prefix in [p for p, who in routes.items() if address in who]:
                routes[prefix].discard(address)
                if not routes[prefix]:
                    del routes[prefix]
                    sub.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
        return True

    def _drain(self, sub: zmq.Socket, routes: dict[str, set[str]]) -> None:
        while sub.poll(0):
            topic, *rest = sub.recv_multipart()
            try:
                name = topic.decode()
                event = decode_event(rest[0] if rest else b"", self._max_frame_bytes)
            except (FrameError, UnicodeDecodeError) as exc:
                log.warning("unreadable bus event skipped", error=str(exc))
                continue
            targets = {a for prefix, who in routes.items() if name.startswith(prefix) for a in who}
            for address in targets:
                self._deliver(address, name, event)
