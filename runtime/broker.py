"""The broker: routes envelopes by address, grants each address to one node at a time.

The protocol is stated in :mod:`protocols.broker`. Like the Majordomo broker, one ROUTER
socket and one poll loop (:meth:`Broker.run`) dispatch by packet type to small parts:
the lease table (:mod:`runtime.leases`: ownership, epochs, fencing, restarts), the peer
rules (:mod:`runtime.permissions`), the sends (:mod:`runtime.router`) and the event bus
(:mod:`runtime.bus_proxy`). Guarantees, beyond those of its parts:

* **Node identity.** No peer can take over a node's connection (no ``ROUTER_HANDOVER``);
  a second live process with the same node id is refused (:mod:`runtime.leases`).
* **No silent loss, no re-sends.** The ROUTER runs with ``ROUTER_MANDATORY``: a request
  that cannot be routed is answered ``NoSuchAddress`` (or ``Busy`` when the peer's queue
  is full). A frame that cannot be read is answered ``BadRequest``. A request held by a
  node presumed dead is answered ``Unavailable`` then, not left to its deadline
  (:mod:`runtime.pending`). The broker never re-sends a request by itself, and never
  opens a body it only routes.
* **Status.** The address ``broker`` answers ``GetStatus`` with the broker's view.
* **Events.** An XSUB/XPUB proxy carries the event bus: publishers connect to
  ``events_in``, subscribers to ``events_out``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import structlog
import zmq

from protocols import errors
from protocols.broker import (
    ActorInfo,
    AddressInfo,
    Claim,
    Disconnect,
    GetStatus,
    Heartbeat,
    NodeInfo,
    Ready,
    Release,
    Status,
    lease_bounds,
)
from protocols.codec import DEFAULT_MAX_FRAME_BYTES, FrameError, decode_packet, open_body
from protocols.envelope import Envelope
from runtime import curve, ipc
from runtime.auth import LOCAL, Peer, PeerAuthenticator
from runtime.bus_proxy import BusProxy
from runtime.leases import Leases, NodeRecord
from runtime.logging import LogThrottle
from runtime.pending import Pending
from runtime.permissions import Permissions, peer_infos
from runtime.router import BROKER_ADDRESS, Router, node_key, peer_name, user_id

log = structlog.get_logger("broker")


@dataclass
class BrokerOptions:
    """Where the broker binds and how it judges liveness; see ``config.RuntimeSettings``."""

    endpoints: list[str]
    events_in: list[str]
    events_out: list[str]
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    curve_secret_key: str | None = None
    # With CURVE: the client keys admitted ({Z85 public key: peer name}) and each peer's
    # rules by name: what it may speak as, and send (see runtime.auth).
    curve_peers: dict[str, str] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    # Where the broker keeps the addresses granted to nodes in other processes (the ones
    # that may outlive it); None: after a start, every fresh claim waits out the leases.
    state_file: str | None = None


class Broker:
    """A ZeroMQ ROUTER broker, run on its own thread (:meth:`start`) or in the caller's."""

    def __init__(self, options: BrokerOptions, context: zmq.Context | None = None) -> None:
        self.options = options
        self._bad_frame = LogThrottle(log, "bad frame")  # peers control how many
        self._zmq = context or zmq.Context.instance()
        self._router = Router()
        lease_s, expiry_s = lease_bounds(options.heartbeat_interval_s, options.heartbeat_liveness)
        self._leases = Leases(self._router, options.state_file, lease_s, expiry_s)
        self._pending = Pending(self._router, grace_s=expiry_s)
        self._started = time.monotonic()
        self._auth: PeerAuthenticator | None = None
        self._permissions: Permissions | None = None
        self._bus = BusProxy(self._zmq)
        self._control_endpoint = f"inproc://switchboard-broker-control-{id(self):x}"
        self._thread: threading.Thread | None = None
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None

    @property
    def dropped_sends(self) -> int:
        """Sends that failed (peer gone or its queue full) since the start."""
        return self._router.dropped_sends

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Bind and serve on a background thread; raises if an endpoint cannot be bound."""
        self._thread = threading.Thread(target=self.run, name="broker", daemon=True)
        self._thread.start()
        if not self._bound.wait(timeout):
            raise TimeoutError("broker did not bind in time")
        if self._bind_error is not None:
            raise self._bind_error

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every socket (idempotent)."""
        if self._thread is None:
            return
        control = self._zmq.socket(zmq.PAIR)
        control.connect(self._control_endpoint)
        control.send(b"stop")
        control.close(linger=1000)
        self._thread.join(timeout)
        self._thread = None

    def run(self) -> None:
        """Serve until :meth:`stop` (blocking; binds in the calling thread)."""
        try:
            router, control = self._bind()
        except BaseException as exc:
            self._bind_error = exc
            self._bound.set()
            if threading.current_thread() is self._thread:
                return  # start() raises it in its caller's thread
            raise
        self._bound.set()
        log.info("broker serving", endpoints=self.options.endpoints, pid=os.getpid())
        try:
            self._serve(router, control)
        finally:
            self._bus.stop()
            router.close(linger=500)
            control.close(linger=0)
            if self._auth is not None:
                self._auth.stop()

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket]:
        router = self._zmq.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # No ROUTER_HANDOVER: a second connection under a live peer's identity is ignored,
        # so nobody can take over a node's connection. Nodes keep one socket for life.
        router.setsockopt(zmq.LINGER, 500)
        router.setsockopt(zmq.MAXMSGSIZE, 4 * self.options.max_frame_bytes)
        secret = self.options.curve_secret_key
        if secret is not None:
            keys = {**self.options.curve_peers, curve.public_key(secret): LOCAL}
            self._auth = PeerAuthenticator(self._zmq, keys, self.options.peers)
            self._auth.start()
            self._permissions = Permissions(self._auth, self._router)
        curve.serve(router, secret)
        for endpoint in self.options.endpoints:
            ipc.bind(router, endpoint)
        self._router.socket = router
        control = self._zmq.socket(zmq.PAIR)
        control.bind(self._control_endpoint)
        self._bus.start(self.options.events_in, self.options.events_out, secret)
        return router, control

    def _serve(self, router: zmq.Socket, control: zmq.Socket) -> None:
        # Leases are checked four times an interval: an expired one is found late by at
        # most a quarter interval (counted in the README's bounds).
        tick = self.options.heartbeat_interval_s / 4
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        next_tick = time.monotonic() + tick
        next_prune = time.monotonic() + self._leases.expiry_s
        while True:
            ready = dict(poller.poll(max(0.0, next_tick - time.monotonic()) * 1000))
            if control in ready:
                return
            if router in ready:
                # Plain recv/getsockopt: pyzmq's recv_multipart costs several times more.
                for _ in range(1000):
                    if not router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        break
                    frames = [router.recv()]
                    sender = None
                    while router.getsockopt(zmq.RCVMORE):
                        if self._auth is None:
                            frames.append(router.recv())
                        else:  # who sent it: the ZAP user id its connection was given
                            frame = router.recv(copy=False)
                            sender = user_id(frame)
                            frames.append(frame.bytes)
                    self._on_frames(frames, sender)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick
                self._expire(now)
                self._leases.end_recovery(now)
                if now >= next_prune:
                    next_prune = now + self._leases.expiry_s
                    self._pending.prune()
            self._leases.flush()

    def _expire(self, now: float) -> None:
        """Leases that surely expired: their nodes are forgotten, their requests answered."""
        for node in self._leases.expire(now):
            count = self._pending.node_died(node.identity, node.node_id)
            if count:
                log.info("requests of a dead node answered", node=node.node_id, count=count)

    # -- packets ----------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], user_id: str | None = None) -> None:
        # A node's actor threads send their replies from sockets of their own, named
        # "<node identity>~<n>"; they speak for their node, and answers go to the node.
        identity = node_key(frames[0])
        if len(frames) != 2:
            reason = f"expected 1 frame per packet, got {len(frames) - 1}"
            self._router.answer_raw(identity, "", reason)
            return
        frame = frames[1]
        try:
            packet = decode_packet(frame, self.options.max_frame_bytes)
        except FrameError as exc:
            self._bad_frame(peer=peer_name(identity), reason=exc.reason)
            self._router.answer_raw(identity, exc.request_id, exc.reason)
            return
        if self._permissions is not None and not self._permissions.allow(identity, user_id, packet):
            return
        leases = self._leases
        node = leases.nodes.get(identity)
        if node is not None:
            node.last_seen = time.monotonic()
        if isinstance(packet, Envelope):
            self._route(identity, node, packet, frame)
        elif isinstance(packet, Heartbeat):
            if node is None:
                self._router.send(identity, Disconnect())
            else:
                node.actors = {a.address: a for a in packet.actors}
                self._router.send(identity, Heartbeat(ack=packet.seq))
        elif isinstance(packet, Ready):
            leases.ready(identity, packet)
        elif node is None:
            self._router.send(identity, Disconnect())
        elif isinstance(packet, Claim):
            leases.claim(node, packet.address, 0, packet.seq, packet.previous)
        elif isinstance(packet, Release):
            leases.release(node, packet.address)
        elif isinstance(packet, Disconnect):
            leases.forget(node, "said goodbye")
        else:
            reason = f"{type(packet).__name__} is not for the broker"
            self._router.answer_raw(identity, "", reason)

    def _route(self, identity: bytes, node: NodeRecord | None, env: Envelope, frame: bytes) -> None:
        if not self._leases.may_send_as(identity, node, env):
            return
        if env.target == BROKER_ADDRESS:
            self._serve_request(identity, env)
            return
        if env.reply_to:
            self._pending.answered(env)
        grant = self._leases.grants.get(env.target)
        destination = grant.node.identity if grant is not None else env.target.encode()
        try:
            self._router.forward(destination, frame)
            if grant is not None and not env.reply_to and not grant.node.local:
                self._pending.forwarded(destination, identity, env)
        except zmq.ZMQError as exc:
            if env.reply_to:
                log.warning("reply undeliverable, dropped", target=env.target, error=str(exc))
                return
            if exc.errno == zmq.EAGAIN:
                error: errors.Error = errors.Busy(message=f"{env.target} cannot take more now")
            else:
                error = errors.NoSuchAddress(
                    address=env.target, message=f"no node or client at {env.target!r}"
                )
            self._router.reply(identity, env, error)

    def _serve_request(self, identity: bytes, env: Envelope) -> None:
        try:
            body = open_body(env.body)
        except FrameError as exc:
            self._router.reply(identity, env, errors.BadRequest(message=exc.reason))
            return
        if isinstance(body, GetStatus):
            self._router.reply(identity, env, self.status())
        else:
            message = f"the broker does not answer {type(body).__name__}"
            self._router.reply(identity, env, errors.BadRequest(message=message))

    def status(self) -> Status:
        """The broker's view of the system (call from the broker's thread)."""
        now = time.monotonic()
        leases = self._leases
        addresses = []
        failed = []
        for address, grant in sorted(leases.grants.items()):
            actor = grant.node.actors.get(address) or ActorInfo(address=address, state="")
            addresses.append(
                AddressInfo(
                    address=address,
                    node_id=grant.node.node_id,
                    epoch=grant.epoch,
                    state=actor.state,
                    mailbox=actor.mailbox,
                    restarts=actor.restarts,
                    last_error=actor.last_error,
                )
            )
            if actor.state == "failed":
                failed.append(address)
        nodes = [
            NodeInfo(
                node_id=n.node_id,
                host=n.host,
                pid=n.pid,
                last_seen_s=round(now - n.last_seen, 3),
                addresses=sorted(n.addresses),
            )
            for n in leases.nodes.values()
        ]
        return Status(
            broker_pid=os.getpid(),
            uptime_s=round(now - self._started, 3),
            nodes=nodes,
            addresses=addresses,
            failed=failed,
            lease_s=leases.lease_s,
            expiry_s=leases.expiry_s,
            dropped_sends=self.dropped_sends,
            peers=peer_infos(self._auth),
        )
