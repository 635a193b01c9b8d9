"""The broker's ROUTER socket as the broker's parts use it: peer identities, and sends.

Guarantees:

* **Sends never block.** Every send is non-blocking; one that fails is counted
  (:attr:`Router.dropped_sends`, shown as ``Status.dropped_sends``), logged once per peer
  until a send to it succeeds again, and the peer treated as gone for it.
* **A node speaks through several sockets.** Its I/O thread's socket is
  ``<node id>~<instance>``; each actor thread replies from ``<node id>~<instance>~<n>``.
  :func:`node_key` maps them all to the node's identity.
"""

from __future__ import annotations

import os

import structlog
import zmq

from protocols import errors
from protocols.codec import encode_packet, pack_body
from protocols.envelope import Envelope

log = structlog.get_logger("broker")

BROKER_ADDRESS = "broker"
SUBSOCKET_SEPARATOR = b"~"
# Peers remembered as unreachable (for logging once each); past this many, forgotten.
_UNREACHABLE_KEPT = 1024


def node_key(identity: bytes) -> bytes:
    """The identity a peer speaks for: ``<node id>~<instance>`` for a node's sockets."""
    return SUBSOCKET_SEPARATOR.join(identity.split(SUBSOCKET_SEPARATOR, 2)[:2])


def peer_name(identity: bytes) -> str:
    """A socket identity as text, for logs and messages."""
    return identity.decode(errors="replace")


def user_id(frame: zmq.Frame) -> str | None:
    """The ZAP user id of the connection ``frame`` came in on; None for inproc, which
    carries no security mechanism (a peer in the broker's own process: local)."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return None


class Router:
    """Sends to the broker's peers (from the broker's thread only).

    The socket is set once the broker has bound it (:attr:`socket`).
    """

    def __init__(self) -> None:
        self.socket: zmq.Socket | None = None
        self.dropped_sends = 0
        self._unreachable: set[bytes] = set()

    def forward(self, identity: bytes, frame: bytes) -> None:
        """Send one frame to a peer; raises zmq.ZMQError if unroutable or full."""
        router = self.socket
        assert router is not None
        router.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        router.send(frame, zmq.NOBLOCK)

    def send(self, identity: bytes, packet: object) -> None:
        """Send without blocking; a failure is counted and logged once per peer."""
        try:
            self.forward(identity, encode_packet(packet))
        except zmq.ZMQError as exc:
            self.dropped_sends += 1
            if identity not in self._unreachable:
                if len(self._unreachable) > _UNREACHABLE_KEPT:
                    self._unreachable.clear()
                self._unreachable.add(identity)
                log.info(
                    "peer unreachable, packets to it dropped",
                    peer=peer_name(identity),
                    error=str(exc),
                )
        else:
            self._unreachable.discard(identity)

    def reply(self, identity: bytes, env: Envelope, body: errors.Message) -> None:
        """Answer the request ``env`` on the broker's behalf."""
        self.send(identity, env.answer(pack_body(body), sender=BROKER_ADDRESS))

    def answer_raw(self, identity: bytes, request_id: str, reason: str) -> None:
        """BadRequest for a frame we could not read; ``reply_to`` is its id if known."""
        reply = Envelope(
            id=os.urandom(16).hex(),
            sender=BROKER_ADDRESS,
            target=identity.decode(errors="replace"),
            body=pack_body(errors.BadRequest(message=reason)),
            reply_to=request_id or "?",
        )
        self.send(identity, reply)
