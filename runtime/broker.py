"""The broker: routes envelopes by address, grants each address to one node at a time.

The protocol is stated in :mod:`protocols.broker`. Guarantees:

* **Single owner.** An address is granted to at most one live node. A claim for an
  address a live node owns is refused with the owner named (node id, host, pid, epoch).
  Each grant carries an epoch greater than every earlier one; a packet sent for an
  address by anyone but its current owner at its current epoch is dropped (fencing), and
  the stale sender is told ``Revoked``.
* **Bounded release.** A node silent for ``heartbeat_liveness`` heartbeat intervals is
  dead: its addresses are free within ``interval * (liveness + 1)`` of its last packet.
* **No silent loss, no re-sends.** The ROUTER runs with ``ROUTER_MANDATORY``: a request
  that cannot be routed is answered ``NoSuchAddress`` (or ``Busy`` when the peer's queue
  is full). A frame that cannot be read is answered ``BadRequest``. The broker never
  re-sends a request by itself, and never opens a body it only routes.
* **Events.** An XSUB/XPUB proxy carries the event bus: publishers connect to
  ``events_in``, subscribers to ``events_out``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
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
    Granted,
    Heartbeat,
    NodeInfo,
    Ready,
    Refused,
    Release,
    Revoked,
    Status,
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
from protocols.errors import Owner
from runtime import curve

log = structlog.get_logger("broker")

BROKER_ADDRESS = "broker"
SUBSOCKET_SEPARATOR = b"~"
_PRESUMED_DEAD_KEPT = 1024


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


@dataclass
class _Node:
    identity: bytes
    node_id: str
    host: str
    pid: int
    last_seen: float
    addresses: dict[str, int] = field(default_factory=dict)
    draining: dict[str, int] = field(default_factory=dict)
    actors: dict[str, ActorInfo] = field(default_factory=dict)


@dataclass
class _Grant:
    node: _Node
    epoch: int


class Broker:
    """A ZeroMQ ROUTER broker, run on its own thread (:meth:`start`) or in the caller's."""

    def __init__(self, options: BrokerOptions, context: zmq.Context | None = None) -> None:
        self.options = options
        self._zmq = context or zmq.Context.instance()
        self._nodes: dict[bytes, _Node] = {}
        self._grants: dict[str, _Grant] = {}
        # Nodes expired for silence: if one wakes up, what it sends is fenced, not refused.
        self._presumed_dead: OrderedDict[bytes, str] = OrderedDict()
        # Epochs start at the start time in ms so that they grow across broker restarts.
        self._next_epoch = int(time.time() * 1000)
        self._started = time.monotonic()
        self._router: zmq.Socket | None = None
        self._control_endpoint = f"inproc://switchboard-broker-control-{id(self):x}"
        self._thread: threading.Thread | None = None
        self._proxy: threading.Thread | None = None
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None

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
            router, control, proxy_control = self._bind()
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
            proxy_control.send(b"TERMINATE")
            if self._proxy is not None:
                self._proxy.join(5)
            proxy_control.close(linger=0)
            router.close(linger=500)
            control.close(linger=0)

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket]:
        router = self._zmq.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A node that reconnects (new socket, same identity) replaces its old connection.
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.setsockopt(zmq.LINGER, 500)
        router.setsockopt(zmq.MAXMSGSIZE, 4 * self.options.max_frame_bytes)
        curve.serve(router, self.options.curve_secret_key)
        for endpoint in self.options.endpoints:
            router.bind(endpoint)
        self._router = router
        control = self._zmq.socket(zmq.PAIR)
        control.bind(self._control_endpoint)
        xsub = self._zmq.socket(zmq.XSUB)
        xpub = self._zmq.socket(zmq.XPUB)
        curve.serve(xsub, self.options.curve_secret_key)
        curve.serve(xpub, self.options.curve_secret_key)
        for endpoint in self.options.events_in:
            xsub.bind(endpoint)
        for endpoint in self.options.events_out:
            xpub.bind(endpoint)
        proxy_endpoint = f"inproc://switchboard-broker-proxy-{id(self):x}"
        proxy_control = self._zmq.socket(zmq.PAIR)
        proxy_control.bind(proxy_endpoint)
        self._proxy = threading.Thread(
            target=_run_proxy,
            args=(self._zmq, xsub, xpub, proxy_endpoint),
            name="broker-events",
            daemon=True,
        )
        self._proxy.start()
        return router, control, proxy_control

    def _serve(self, router: zmq.Socket, control: zmq.Socket) -> None:
        interval = self.options.heartbeat_interval_s
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        next_beat = time.monotonic() + interval
        while True:
            ready = dict(poller.poll(max(0.0, next_beat - time.monotonic()) * 1000))
            if control in ready:
                return
            if router in ready:
                # Plain recv/getsockopt: pyzmq's recv_multipart costs several times more.
                for _ in range(1000):
                    if not router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        break
                    frames = [router.recv()]
                    while router.getsockopt(zmq.RCVMORE):
                        frames.append(router.recv())
                    self._on_frames(frames)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + interval
                self._expire(now)
                for node in self._nodes.values():
                    self._send(node.identity, Heartbeat())

    # -- packets ----------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes]) -> None:
        # A node's actor threads send their replies from sockets of their own, named
        # "<node identity>~<n>"; they speak for their node, and answers go to the node.
        identity = frames[0].partition(SUBSOCKET_SEPARATOR)[0]
        if len(frames) != 2:
            self._answer_raw(identity, "", f"expected 1 frame per packet, got {len(frames) - 1}")
            return
        frame = frames[1]
        try:
            packet = decode_packet(frame, self.options.max_frame_bytes)
        except FrameError as exc:
            log.warning("bad frame", peer=_peer(identity), reason=exc.reason)
            self._answer_raw(identity, exc.request_id, exc.reason)
            return
        node = self._nodes.get(identity)
        if node is not None:
            node.last_seen = time.monotonic()
        if isinstance(packet, Envelope):
            self._route(identity, node, packet, frame)
        elif isinstance(packet, Heartbeat):
            if node is None:
                self._send(identity, Disconnect())
            else:
                node.actors = {a.address: a for a in packet.actors}
        elif isinstance(packet, Ready):
            self._on_ready(identity, packet)
        elif node is None:
            self._send(identity, Disconnect())
        elif isinstance(packet, Claim):
            self._claim(node, packet.address)
        elif isinstance(packet, Release):
            self._release(node, packet.address)
        elif isinstance(packet, Disconnect):
            self._forget(node, "said goodbye")
        else:
            self._answer_raw(identity, "", f"{type(packet).__name__} is not for the broker")

    def _on_ready(self, identity: bytes, ready: Ready) -> None:
        node = self._nodes.get(identity)
        if node is None:
            self._presumed_dead.pop(identity, None)
            node = _Node(identity, ready.node_id, ready.host, ready.pid, time.monotonic())
            self._nodes[identity] = node
            log.info("node ready", node=node.node_id, host=node.host, pid=node.pid)
        for address in ready.addresses:
            self._claim(node, address)

    def _claim(self, node: _Node, address: str) -> None:
        grant = self._grants.get(address)
        if grant is not None and grant.node is not node:
            owner = grant.node
            self._send(
                node.identity,
                Refused(
                    address=address,
                    owner=Owner(
                        node_id=owner.node_id, host=owner.host, pid=owner.pid, epoch=grant.epoch
                    ),
                    reason="owned by a live node",
                ),
            )
            return
        if grant is None:
            self._next_epoch += 1
            grant = _Grant(node, self._next_epoch)
            self._grants[address] = grant
            node.addresses[address] = grant.epoch
            node.draining.pop(address, None)
            for other in self._nodes.values():
                other.draining.pop(address, None)
            log.info("address granted", address=address, node=node.node_id, epoch=grant.epoch)
        self._send(node.identity, Granted(address=address, epoch=grant.epoch))

    def _release(self, node: _Node, address: str) -> None:
        grant = self._grants.get(address)
        if grant is None or grant.node is not node:
            return
        del self._grants[address]
        node.draining[address] = node.addresses.pop(address)
        log.info("address released", address=address, node=node.node_id)

    def _forget(self, node: _Node, why: str, *, presumed_dead: bool = False) -> None:
        self._nodes.pop(node.identity, None)
        if presumed_dead:
            self._presumed_dead[node.identity] = node.node_id
            while len(self._presumed_dead) > _PRESUMED_DEAD_KEPT:
                self._presumed_dead.popitem(last=False)
        for address in node.addresses:
            self._grants.pop(address, None)
        log.info("node gone", node=node.node_id, why=why, released=sorted(node.addresses))

    def _expire(self, now: float) -> None:
        limit = self.options.heartbeat_interval_s * self.options.heartbeat_liveness
        for node in list(self._nodes.values()):
            if now - node.last_seen > limit:
                why = f"silent for {now - node.last_seen:.1f}s"
                self._forget(node, why, presumed_dead=True)

    def _route(self, identity: bytes, node: _Node | None, env: Envelope, frame: bytes) -> None:
        if not self._sender_ok(identity, node, env):
            return
        if env.target == BROKER_ADDRESS:
            self._serve_request(identity, env)
            return
        grant = self._grants.get(env.target)
        destination = grant.node.identity if grant is not None else env.target.encode()
        try:
            self._forward(destination, frame)
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
            self._reply(identity, env, error)

    def _sender_ok(self, identity: bytes, node: _Node | None, env: Envelope) -> bool:
        """Fencing: may this peer speak as ``env.sender``? Drops and tells it if not."""
        if env.sender.encode() == identity:
            return True
        grant = self._grants.get(env.sender)
        if node is None and identity not in self._presumed_dead:
            message = f"sender {env.sender!r} is not this peer's identity"
            self._reply(identity, env, errors.BadRequest(message=message))
            return False
        if grant is not None:
            if grant.node.identity == identity and grant.epoch == env.epoch:
                return True
            log.warning(
                "dropped packet from stale owner",
                address=env.sender,
                epoch=env.epoch,
                current_epoch=grant.epoch,
                peer=_peer(identity),
            )
            self._send(identity, Revoked(address=env.sender, epoch=env.epoch))
            return False
        if node is not None and node.draining.get(env.sender) == env.epoch:
            return True
        log.warning("dropped packet for an address not granted", address=env.sender)
        self._send(identity, Revoked(address=env.sender, epoch=env.epoch))
        return False

    def _serve_request(self, identity: bytes, env: Envelope) -> None:
        try:
            body = open_body(env.body)
        except FrameError as exc:
            self._reply(identity, env, errors.BadRequest(message=exc.reason))
            return
        if isinstance(body, GetStatus):
            self._reply(identity, env, self.status())
        else:
            message = f"the broker does not answer {type(body).__name__}"
            self._reply(identity, env, errors.BadRequest(message=message))

    def status(self) -> Status:
        """The broker's view of the system (call from the broker's thread)."""
        now = time.monotonic()
        addresses = []
        failed = []
        for address, grant in sorted(self._grants.items()):
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
            for n in self._nodes.values()
        ]
        return Status(
            broker_pid=os.getpid(),
            uptime_s=round(now - self._started, 3),
            nodes=nodes,
            addresses=addresses,
            failed=failed,
        )

    # -- sending ----------------------------------------------------------------------

    def _forward(self, identity: bytes, frame: bytes) -> None:
        """Send one frame to a peer; raises zmq.ZMQError if unroutable or full."""
        router = self._router
        assert router is not None
        router.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        router.send(frame, zmq.NOBLOCK)

    def _send(self, identity: bytes, packet: object) -> None:
        try:
            self._forward(identity, encode_packet(packet))
        except zmq.ZMQError as exc:
            log.debug("control packet undeliverable", peer=_peer(identity), error=str(exc))

    def _reply(self, identity: bytes, env: Envelope, body: errors.Message) -> None:
        reply = env.answer(pack_body(body), sender=BROKER_ADDRESS)
        self._send(identity, reply)

    def _answer_raw(self, identity: bytes, request_id: str, reason: str) -> None:
        """BadRequest for a frame we could not read; ``reply_to`` is its id if known."""
        reply = Envelope(
            id=os.urandom(16).hex(),
            sender=BROKER_ADDRESS,
            target=identity.decode(errors="replace"),
            body=pack_body(errors.BadRequest(message=reason)),
            reply_to=request_id or "?",
        )
        self._send(identity, reply)


def _peer(identity: bytes) -> str:
    return identity.decode(errors="replace")


def _run_proxy(context: zmq.Context, xsub: zmq.Socket, xpub: zmq.Socket, control: str) -> None:
    """The event bus: XSUB in, XPUB out, until TERMINATE arrives on ``control``."""
    ctl = context.socket(zmq.PAIR)
    ctl.connect(control)
    try:
        zmq.proxy_steerable(xsub, xpub, None, ctl)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close(linger=0)
        xpub.close(linger=0)
        ctl.close(linger=0)
