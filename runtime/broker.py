"""The broker: routes envelopes by address, grants each address to one node at a time.

The protocol is stated in :mod:`protocols.broker`. Guarantees:

* **Single owner, by lease.** An address is granted to at most one node at a time, as
  a lease the node renews with its heartbeats (:func:`protocols.broker.lease_bounds`).
  A claim for an address a live node owns is refused with the owner named (node id,
  host, pid, epoch). An address moves to another node only after its holder's lease has
  surely expired (``expiry`` after the holder's last packet, clock margin included) or
  the holder said goodbye after stopping its actors. Each new grant carries an epoch
  greater than every earlier one; a packet sent for an address by anyone but its
  current owner at its current epoch is dropped (fencing), and the sender told
  ``Revoked``.
* **Restarts keep owners.** A restarted broker grants a re-claim (an address with the
  epoch its node still holds a lease for) at once, at that epoch; a fresh claim for an
  address that a node may still hold from before the restart waits until that node
  re-claims it (the claim is then refused) or its lease has surely expired. Which
  addresses those are is the one piece of state kept on disk (``state_file``, written
  atomically before a grant to another process is announced); without one, every fresh
  claim waits ``expiry`` after the start.
* **Node identity.** A node is its id plus a random per-process instance. A second live
  process with the same node id is refused with the running one named; no peer can take
  over a node's connection (no ``ROUTER_HANDOVER``).
* **Sends never block.** Every send is non-blocking; one that fails is counted
  (``Status.dropped_sends``), logged once per peer, and the peer treated as gone for it.
* **No silent loss, no re-sends.** The ROUTER runs with ``ROUTER_MANDATORY``: a request
  that cannot be routed is answered ``NoSuchAddress`` (or ``Busy`` when the peer's queue
  is full). A frame that cannot be read is answered ``BadRequest``. The broker never
  re-sends a request by itself, and never opens a body it only routes.
* **Events.** An XSUB/XPUB proxy carries the event bus: publishers connect to
  ``events_in``, subscribers to ``events_out``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import zmq

from protocols import errors
from protocols.broker import (
    NODE_PREFIX,
    ActorInfo,
    AddressInfo,
    Claim,
    Disconnect,
    GetStatus,
    Granted,
    Heartbeat,
    NodeInfo,
    PeerInfo,
    Ready,
    Refused,
    Release,
    Revoked,
    Status,
    lease_bounds,
)
from protocols.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameError,
    body_type,
    decode_packet,
    encode_packet,
    open_body,
    pack_body,
)
from protocols.envelope import Envelope
from protocols.errors import Owner
from runtime import curve, ipc
from runtime.auth import LOCAL, Peer, PeerAuthenticator
from runtime.logging import LogThrottle

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
    # With CURVE: the client keys admitted ({Z85 public key: peer name}) and each peer's
    # rules by name: what it may speak as, and send (see runtime.auth).
    curve_peers: dict[str, str] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    # Where the broker keeps the addresses granted to nodes in other processes (the ones
    # that may outlive it); None: after a start, every fresh claim waits out the leases.
    state_file: str | None = None


@dataclass
class _Node:
    identity: bytes
    node_id: str
    host: str
    pid: int
    last_seen: float
    # A node in the broker's own process dies with it: no lease of it outlives a restart.
    local: bool = False
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
        self._bad_frame = LogThrottle(log, "bad frame")  # peers control how many
        self._zmq = context or zmq.Context.instance()
        self._nodes: dict[bytes, _Node] = {}
        self._by_node_id: dict[str, _Node] = {}
        self._grants: dict[str, _Grant] = {}
        self._lease_s, self._expiry_s = lease_bounds(
            options.heartbeat_interval_s, options.heartbeat_liveness
        )
        # Claims that wait for an address to be free: (node identity, the epoch at which it
        # held the address before, 0 if never), in arrival order.
        self._waiting: dict[str, list[tuple[bytes, int]]] = {}
        # The last epoch of each address whose holder this broker presumed dead.
        self._expired: dict[str, int] = {}
        # Addresses a node may still hold from before this broker started (None: any).
        # Addresses a node may still hold from before this broker started (None: any), with
        # the epoch last granted for each.
        self._recovering: dict[str, int] | None = _read_state(options.state_file)
        self._recover_until = time.monotonic() + self._expiry_s
        # Granted packets held back until the state file says what they grant.
        self._held_back: list[tuple[bytes, Granted]] = []
        self._state_dirty = False
        self.dropped_sends = 0
        self._unreachable: set[bytes] = set()
        # Nodes expired for silence: if one wakes up, what it sends is fenced, not refused.
        self._presumed_dead: OrderedDict[bytes, str] = OrderedDict()
        # Epochs start at the start time in ms so that they grow across broker restarts.
        self._next_epoch = int(time.time() * 1000)
        self._started = time.monotonic()
        self._router: zmq.Socket | None = None
        self._auth: PeerAuthenticator | None = None
        self._speaks_as = LogThrottle(log, "peer refused: speaks as a name it may not")
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
            if self._auth is not None:
                self._auth.stop()

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket]:
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
        curve.serve(router, secret)
        for endpoint in self.options.endpoints:
            ipc.bind(router, endpoint)
        self._router = router
        control = self._zmq.socket(zmq.PAIR)
        control.bind(self._control_endpoint)
        xsub = self._zmq.socket(zmq.XSUB)
        xpub = self._zmq.socket(zmq.XPUB)
        curve.serve(xsub, self.options.curve_secret_key)
        curve.serve(xpub, self.options.curve_secret_key)
        for endpoint in self.options.events_in:
            ipc.bind(xsub, endpoint)
        for endpoint in self.options.events_out:
            ipc.bind(xpub, endpoint)
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
        # Leases are checked four times an interval: an expired one is found late by at
        # most a quarter interval (counted in the README's bounds).
        tick = self.options.heartbeat_interval_s / 4
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        next_tick = time.monotonic() + tick
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
                    user_id = None
                    while router.getsockopt(zmq.RCVMORE):
                        if self._auth is None:
                            frames.append(router.recv())
                        else:  # who sent it: the ZAP user id its connection was given
                            frame = router.recv(copy=False)
                            user_id = _user_id(frame)
                            frames.append(frame.bytes)
                    self._on_frames(frames, user_id)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick
                self._expire(now)
                self._end_recovery(now)
            self._flush()

    # -- packets ----------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], user_id: str | None = None) -> None:
        # A node's actor threads send their replies from sockets of their own, named
        # "<node identity>~<n>"; they speak for their node, and answers go to the node.
        identity = node_key(frames[0])
        if len(frames) != 2:
            self._answer_raw(identity, "", f"expected 1 frame per packet, got {len(frames) - 1}")
            return
        frame = frames[1]
        try:
            packet = decode_packet(frame, self.options.max_frame_bytes)
        except FrameError as exc:
            self._bad_frame(peer=_peer(identity), reason=exc.reason)
            self._answer_raw(identity, exc.request_id, exc.reason)
            return
        if self._auth is not None and not self._may_speak(identity, user_id, packet):
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
                self._send(identity, Heartbeat(ack=packet.seq))
        elif isinstance(packet, Ready):
            self._on_ready(identity, packet)
        elif node is None:
            self._send(identity, Disconnect())
        elif isinstance(packet, Claim):
            self._claim(node, packet.address, 0, packet.seq, packet.previous)
        elif isinstance(packet, Release):
            self._release(node, packet.address)
        elif isinstance(packet, Disconnect):
            self._forget(node, "said goodbye")
        else:
            self._answer_raw(identity, "", f"{type(packet).__name__} is not for the broker")

    def _may_speak(self, identity: bytes, user_id: str | None, packet: object) -> bool:
        """Authentication: may the peer behind this connection use this identity (its name
        before ``~``) and claim these addresses? Refuses (logged, rate limited) if not."""
        assert self._auth is not None
        peer = self._auth.peer(user_id)
        name = _peer(identity).split(SUBSOCKET_SEPARATOR.decode())[0]
        claimed = [packet.address] if isinstance(packet, Claim) else []
        if isinstance(packet, Ready):
            claimed = list(packet.addresses)
        wrong = [n for n in [name, *claimed] if not peer.may_speak_as(n)]
        if not wrong:
            return not isinstance(packet, Envelope) or self._permitted(identity, peer, packet)
        self._speaks_as(peer=peer.name, name=wrong[0])
        reason = f"peer {peer.name!r} may not speak as {wrong[0]!r}"
        if isinstance(packet, Envelope):
            self._reply(identity, packet, errors.Unauthorized(message=reason))
        elif isinstance(packet, Ready | Claim):
            owner = Owner(node_id="", host="", pid=0, epoch=0)
            self._send(identity, Refused(address=wrong[0], owner=owner, reason=reason))
        return False

    def _permitted(self, identity: bytes, peer: Peer, env: Envelope) -> bool:
        """Authorization: may ``peer`` send this request? Replies always pass (they answer
        a request that passed); a refused one is answered Unauthorized naming the rule."""
        if peer.local or env.reply_to:
            return True
        message_type = body_type(env.body)
        rule = peer.refusal(env.target, message_type)
        if rule is None:
            return True
        log.warning(
            "request refused",
            peer=peer.name,
            sender=env.sender,
            target=env.target,
            type=message_type,
            rule=rule,
        )
        message = f"{message_type} to {env.target} refused: {rule}"
        self._reply(identity, env, errors.Unauthorized(message=message))
        return False

    def _on_ready(self, identity: bytes, ready: Ready) -> None:
        node = self._nodes.get(identity)
        if node is None:
            running = self._by_node_id.get(ready.node_id)
            if running is not None:
                self._refuse_node(identity, ready, running)
                return
            self._presumed_dead.pop(identity, None)
            local = ready.pid == os.getpid() and ready.host == socket.gethostname()
            node = _Node(identity, ready.node_id, ready.host, ready.pid, time.monotonic(), local)
            self._nodes[identity] = node
            self._by_node_id[node.node_id] = node
            log.info("node ready", node=node.node_id, host=node.host, pid=node.pid)
        self._send(identity, Heartbeat(ack=ready.seq))
        for address in ready.addresses:
            held, previous = ready.held.get(address, 0), ready.previous.get(address, 0)
            self._claim(node, address, held, ready.seq, previous)

    def _refuse_node(self, identity: bytes, ready: Ready, running: _Node) -> None:
        """Another process says it is a live node's id: refuse it, naming the running one."""
        seen = time.monotonic() - running.last_seen
        log.warning(
            "node id in use, newcomer refused",
            node=ready.node_id,
            running_pid=running.pid,
            running_host=running.host,
            newcomer_pid=ready.pid,
            newcomer_host=ready.host,
        )
        reason = (
            f"node id {ready.node_id} is in use by a live process (host {running.host}, "
            f"pid {running.pid}, last heard {seen:.1f}s ago); a dead one's lease expires "
            f"{self._expiry_s:.1f}s after it was last heard"
        )
        owner = Owner(node_id=running.node_id, host=running.host, pid=running.pid, epoch=0)
        address = f"{NODE_PREFIX}{ready.node_id}"
        self._send(identity, Refused(address=address, owner=owner, reason=reason))

    def _claim(
        self, node: _Node, address: str, held_epoch: int, seq: int, previous: int = 0
    ) -> None:
        """Grant, refuse, or (while a previous holder may hold a lease) defer a claim.

        ``held_epoch`` is set for a re-claim: the node still holds a lease on the address
        at that epoch (granted before this broker started, or before a reconnect).
        A refused claim also waits: the address goes to a waiting node the moment its
        holder is gone, preferring the node that held it last (``previous``).
        """
        grant = self._grants.get(address)
        if grant is not None and grant.node is node:
            self._announce(node, Granted(address=address, epoch=grant.epoch, ack=seq))
            return
        if grant is None and held_epoch and self._may_reclaim(address, held_epoch):
            self._grant(node, address, held_epoch, seq)
            log.info("lease re-claimed", address=address, node=node.node_id, epoch=held_epoch)
            return
        if grant is None and previous and self._was_last_holder(address, previous):
            # Its lease ran out while the broker was away, and nobody was granted the
            # address since (a later grant would be in the state file): it goes back.
            self._grant(node, address, previous, seq)
            log.info("address back to its last holder", address=address, node=node.node_id)
            return
        if grant is not None or self._blocked(address):
            waiting = self._waiting.setdefault(address, [])
            if all(identity != node.identity for identity, _ in waiting):
                waiting.append((node.identity, previous))
                if grant is None:
                    log.info("claim waits for a lease", address=address, node=node.node_id)
            if grant is not None:
                self._refuse(node.identity, address, grant)
        else:
            self._next_epoch += 1
            self._grant(node, address, self._next_epoch, seq)

    def _grant(self, node: _Node, address: str, epoch: int, seq: int) -> None:
        self._next_epoch = max(self._next_epoch, epoch)
        self._grants[address] = _Grant(node, epoch)
        node.addresses[address] = epoch
        for other in self._nodes.values():
            other.draining.pop(address, None)
        log.info("address granted", address=address, node=node.node_id, epoch=epoch)
        self._state_dirty = self._state_dirty or not node.local
        self._announce(node, Granted(address=address, epoch=epoch, ack=seq))
        for identity, _ in self._waiting.pop(address, []):
            if identity != node.identity:
                self._refuse(identity, address, self._grants[address])

    def _announce(self, node: _Node, granted: Granted) -> None:
        """Tell a node of its grant; to another process only once the state file lists it."""
        if node.local:
            self._send(node.identity, granted)
        else:
            self._held_back.append((node.identity, granted))

    def _refuse(self, identity: bytes, address: str, grant: _Grant) -> None:
        owner = grant.node
        self._send(
            identity,
            Refused(
                address=address,
                owner=Owner(
                    node_id=owner.node_id, host=owner.host, pid=owner.pid, epoch=grant.epoch
                ),
                reason="owned by a live node",
            ),
        )

    def _may_reclaim(self, address: str, held: int) -> bool:
        """Is ``held`` no older than the last grant known for ``address``?

        Known: the grants this broker let expire, and what the previous one recorded.
        """
        if address in self._expired and held <= self._expired[address]:
            return False
        return held >= (self._recovering or {}).get(address, 0)

    def _was_last_holder(self, address: str, previous: int) -> bool:
        """Was ``previous`` the last epoch granted for an address held before the restart?"""
        if self._recovering is None or address in self._expired:
            return False
        draining = any(address in n.draining for n in self._nodes.values())
        return not draining and self._recovering.get(address) == previous

    def _blocked(self, address: str) -> bool:
        """May a node still hold a lease on this ungranted address?"""
        recovering = self._recovering is None or address in self._recovering
        if recovering and time.monotonic() < self._recover_until:
            return True
        return any(address in n.draining for n in self._nodes.values())

    def _free(self, address: str) -> None:
        """An address may have become free: grant it to a waiting node.

        The live waiting node that held it at the latest epoch goes first, then the
        earliest to ask.
        """
        if address in self._grants or self._blocked(address):
            return
        waiting = [(i, p) for i, p in self._waiting.pop(address, []) if i in self._nodes]
        if waiting:
            identity, _ = max(waiting, key=lambda entry: entry[1])  # max keeps the first
            self._next_epoch += 1
            self._grant(self._nodes[identity], address, self._next_epoch, 0)

    def _end_recovery(self, now: float) -> None:
        if self._recovering is not None and not self._recovering:
            return
        if now < self._recover_until:
            return
        self._recovering = {}
        log.info("leases from before the start have expired")
        for address in list(self._waiting):
            self._free(address)

    def _release(self, node: _Node, address: str) -> None:
        """The node stops hosting ``address``; it moves on when the node says goodbye."""
        grant = self._grants.get(address)
        if grant is None or grant.node is not node:
            return
        del self._grants[address]
        node.draining[address] = node.addresses.pop(address)
        log.info("address released", address=address, node=node.node_id)

    def _forget(self, node: _Node, why: str, *, presumed_dead: bool = False) -> None:
        self._nodes.pop(node.identity, None)
        if self._by_node_id.get(node.node_id) is node:
            del self._by_node_id[node.node_id]
        if presumed_dead:
            self._presumed_dead[node.identity] = node.node_id
            while len(self._presumed_dead) > _PRESUMED_DEAD_KEPT:
                self._presumed_dead.popitem(last=False)
            self._expired.update(node.addresses)
        for address in node.addresses:
            self._grants.pop(address, None)
        self._state_dirty = self._state_dirty or not node.local
        log.info("node gone", node=node.node_id, why=why, released=sorted(node.addresses))
        for address in [*node.addresses, *node.draining]:
            self._free(address)

    def _expire(self, now: float) -> None:
        """Forget nodes whose lease has surely expired; their addresses move on."""
        for node in list(self._nodes.values()):
            if now - node.last_seen > self._expiry_s:
                why = f"silent for {now - node.last_seen:.1f}s, lease expired"
                self._forget(node, why, presumed_dead=True)

    def _flush(self) -> None:
        """Write the state file if it changed, then announce the grants it now lists."""
        if self._state_dirty:
            held = {
                address: epoch
                for n in self._nodes.values()
                if not n.local
                for address, epoch in [*n.addresses.items(), *n.draining.items()]
            }
            # What the previous broker granted stays listed until its leases expired:
            # a broker that dies again meanwhile must still wait for those.
            for address, epoch in (self._recovering or {}).items():
                held.setdefault(address, epoch)
            try:
                _write_state(self.options.state_file, held)
            except OSError as exc:
                # Unannounced grants wait: a restart must know whom they went to.
                log.error("broker state not written, grants held back", error=str(exc))
                return
            self._state_dirty = False
        held_back, self._held_back = self._held_back, []
        for identity, granted in held_back:
            self._send(identity, granted)

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
        if node is not None and env.sender == node.node_id:
            return True  # the node answering for itself (Busy, Timeout, NoSuchAddress)
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
            lease_s=self._lease_s,
            expiry_s=self._expiry_s,
            dropped_sends=self.dropped_sends,
            peers=self._peer_infos(),
        )

    def _peer_infos(self) -> list[PeerInfo]:
        """Who may connect and what each may do: without CURVE, this host's user only."""
        infos = [PeerInfo(name=LOCAL, names=["*"], send_to=["*"])]
        for peer in self._auth.peers if self._auth is not None else []:
            names = list(peer.names or (peer.name, f"{peer.name}:*"))
            infos.append(
                PeerInfo(
                    name=peer.name, names=names, send_to=list(peer.send_to), deny=list(peer.deny)
                )
            )
        return infos

    # -- sending ----------------------------------------------------------------------

    def _forward(self, identity: bytes, frame: bytes) -> None:
        """Send one frame to a peer; raises zmq.ZMQError if unroutable or full."""
        router = self._router
        assert router is not None
        router.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        router.send(frame, zmq.NOBLOCK)

    def _send(self, identity: bytes, packet: object) -> None:
        """Send without blocking; a failure is counted and logged once per peer."""
        try:
            self._forward(identity, encode_packet(packet))
        except zmq.ZMQError as exc:
            self.dropped_sends += 1
            if identity not in self._unreachable:
                if len(self._unreachable) > _PRESUMED_DEAD_KEPT:
                    self._unreachable.clear()
                self._unreachable.add(identity)
                log.info(
                    "peer unreachable, packets to it dropped", peer=_peer(identity), error=str(exc)
                )
        else:
            self._unreachable.discard(identity)

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


def _user_id(frame: zmq.Frame) -> str | None:
    """The ZAP user id of the connection ``frame`` came in on; None for inproc, which
    carries no security mechanism (a peer in the broker's own process: local)."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return None


def _peer(identity: bytes) -> str:
    return identity.decode(errors="replace")


def node_key(identity: bytes) -> bytes:
    """The identity a peer speaks for: ``<node id>~<instance>`` for a node's sockets."""
    return SUBSOCKET_SEPARATOR.join(identity.split(SUBSOCKET_SEPARATOR, 2)[:2])


def _read_state(path: str | None) -> dict[str, int] | None:
    """{address: epoch} the previous broker had granted to other processes (None: unknown)."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("broker state unreadable, every claim waits out the leases", error=str(exc))
        return None
    state: dict[str, int] = {}
    for line in text.splitlines():
        address, _, epoch = line.rpartition(" ")
        if not address or not epoch.isdigit():
            log.warning("broker state malformed, every claim waits out the leases", line=line)
            return None
        state[address] = int(epoch)
    return state


def _write_state(path: str | None, addresses: dict[str, int]) -> None:
    """Replace the state file atomically and durably (write, fsync, rename, fsync dir)."""
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{a} {e}\n" for a, e in sorted(addresses.items())))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
