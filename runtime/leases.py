"""The broker's lease table: which node owns which address, at which epoch, until when.

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
  addresses those are is the one piece of state kept on disk (:mod:`runtime.lease_file`,
  written before a grant to another process is announced); without one, every fresh
  claim waits ``expiry`` after the start.
* **Node identity.** A node is its id plus a random per-process instance. A second live
  process with the same node id is refused with the running one named.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import structlog

from protocols import errors
from protocols.broker import NODE_PREFIX, ActorInfo, Granted, Heartbeat, Ready, Refused, Revoked
from protocols.envelope import Envelope
from protocols.errors import Owner
from runtime import lease_file
from runtime.router import Router, peer_name

log = structlog.get_logger("broker")

# Nodes remembered as presumed dead (their late packets fenced); past this many, forgotten.
_PRESUMED_DEAD_KEPT = 1024


@dataclass
class NodeRecord:
    """A node as the broker knows it: who it is, when it was last heard, what it holds."""

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
class Grant:
    """An address's current owner and the epoch of its grant."""

    node: NodeRecord
    epoch: int


class Leases:
    """The nodes, their grants and the claims waiting (broker thread only).

    ``expiry_s`` after a node's last packet its lease has surely expired; ``state_file``
    keeps the addresses granted to other processes across a restart (None: not kept).
    """

    def __init__(
        self, router: Router, state_file: str | None, lease_s: float, expiry_s: float
    ) -> None:
        self._router = router
        self._state_file = state_file
        self.lease_s = lease_s
        self.expiry_s = expiry_s
        self.nodes: dict[bytes, NodeRecord] = {}
        self.grants: dict[str, Grant] = {}
        self._by_node_id: dict[str, NodeRecord] = {}
        # Claims that wait for an address to be free: (node identity, the epoch at which it
        # held the address before, 0 if never), in arrival order.
        self._waiting: dict[str, list[tuple[bytes, int]]] = {}
        # The last epoch of each address whose holder this broker presumed dead.
        self._expired: dict[str, int] = {}
        # Addresses a node may still hold from before this broker started (None: any), with
        # the epoch last granted for each.
        self._recovering: dict[str, int] | None = lease_file.read(state_file)
        self._recover_until = time.monotonic() + expiry_s
        # Granted packets held back until the state file says what they grant.
        self._held_back: list[tuple[bytes, Granted]] = []
        self._state_dirty = False
        # Nodes expired for silence: if one wakes up, what it sends is fenced, not refused.
        self._presumed_dead: OrderedDict[bytes, str] = OrderedDict()
        # Epochs start at the start time in ms so that they grow across broker restarts.
        self._next_epoch = int(time.time() * 1000)

    # -- nodes ----------------------------------------------------------------------

    def ready(self, identity: bytes, ready: Ready) -> None:
        """A node says hello: register it (unless its id is taken) and take its claims."""
        node = self.nodes.get(identity)
        if node is None:
            running = self._by_node_id.get(ready.node_id)
            if running is not None:
                self._refuse_node(identity, ready, running)
                return
            self._presumed_dead.pop(identity, None)
            local = ready.pid == os.getpid() and ready.host == socket.gethostname()
            node = NodeRecord(
                identity, ready.node_id, ready.host, ready.pid, time.monotonic(), local
            )
            self.nodes[identity] = node
            self._by_node_id[node.node_id] = node
            log.info("node ready", node=node.node_id, host=node.host, pid=node.pid)
        self._router.send(identity, Heartbeat(ack=ready.seq))
        for address in ready.addresses:
            held, previous = ready.held.get(address, 0), ready.previous.get(address, 0)
            self.claim(node, address, held, ready.seq, previous)

    def _refuse_node(self, identity: bytes, ready: Ready, running: NodeRecord) -> None:
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
            f"{self.expiry_s:.1f}s after it was last heard"
        )
        owner = Owner(node_id=running.node_id, host=running.host, pid=running.pid, epoch=0)
        address = f"{NODE_PREFIX}{ready.node_id}"
        self._router.send(identity, Refused(address=address, owner=owner, reason=reason))

    def forget(self, node: NodeRecord, why: str, *, presumed_dead: bool = False) -> None:
        """The node is gone (goodbye, or silence): its addresses move on."""
        self.nodes.pop(node.identity, None)
        if self._by_node_id.get(node.node_id) is node:
            del self._by_node_id[node.node_id]
        if presumed_dead:
            self._presumed_dead[node.identity] = node.node_id
            while len(self._presumed_dead) > _PRESUMED_DEAD_KEPT:
                self._presumed_dead.popitem(last=False)
            self._expired.update(node.addresses)
        for address in node.addresses:
            self.grants.pop(address, None)
        self._state_dirty = self._state_dirty or not node.local
        log.info("node gone", node=node.node_id, why=why, released=sorted(node.addresses))
        for address in [*node.addresses, *node.draining]:
            self._free(address)

    def expire(self, now: float) -> list[NodeRecord]:
        """Forget nodes whose lease has surely expired (their addresses move on); returns
        them."""
        expired = [n for n in self.nodes.values() if now - n.last_seen > self.expiry_s]
        for node in expired:
            why = f"silent for {now - node.last_seen:.1f}s, lease expired"
            self.forget(node, why, presumed_dead=True)
        return expired

    # -- claims and grants -----------------------------------------------------------

    def claim(
        self, node: NodeRecord, address: str, held_epoch: int, seq: int, previous: int = 0
    ) -> None:
        """Grant, refuse, or (while a previous holder may hold a lease) defer a claim.

        ``held_epoch`` is set for a re-claim: the node still holds a lease on the address
        at that epoch (granted before this broker started, or before a reconnect).
        A refused claim also waits: the address goes to a waiting node the moment its
        holder is gone, preferring the node that held it last (``previous``).
        """
        grant = self.grants.get(address)
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

    def release(self, node: NodeRecord, address: str) -> None:
        """The node stops hosting ``address``; it moves on when the node says goodbye."""
        grant = self.grants.get(address)
        if grant is None or grant.node is not node:
            return
        del self.grants[address]
        node.draining[address] = node.addresses.pop(address)
        log.info("address released", address=address, node=node.node_id)

    def _grant(self, node: NodeRecord, address: str, epoch: int, seq: int) -> None:
        self._next_epoch = max(self._next_epoch, epoch)
        self.grants[address] = Grant(node, epoch)
        node.addresses[address] = epoch
        for other in self.nodes.values():
            other.draining.pop(address, None)
        log.info("address granted", address=address, node=node.node_id, epoch=epoch)
        self._state_dirty = self._state_dirty or not node.local
        self._announce(node, Granted(address=address, epoch=epoch, ack=seq))
        for identity, _ in self._waiting.pop(address, []):
            if identity != node.identity:
                self._refuse(identity, address, self.grants[address])

    def _announce(self, node: NodeRecord, granted: Granted) -> None:
        """Tell a node of its grant; to another process only once the state file lists it."""
        if node.local:
            self._router.send(node.identity, granted)
        else:
            self._held_back.append((node.identity, granted))

    def _refuse(self, identity: bytes, address: str, grant: Grant) -> None:
        owner = grant.node
        self._router.send(
            identity,
            Refused(
                address=address,
                owner=Owner(
                    node_id=owner.node_id, host=owner.host, pid=owner.pid, epoch=grant.epoch
                ),
                reason="owned by a live node",
            ),
        )

    def _free(self, address: str) -> None:
        """An address may have become free: grant it to a waiting node.

        The live waiting node that held it at the latest epoch goes first, then the
        earliest to ask.
        """
        if address in self.grants or self._blocked(address):
            return
        waiting = [(i, p) for i, p in self._waiting.pop(address, []) if i in self.nodes]
        if waiting:
            identity, _ = max(waiting, key=lambda entry: entry[1])  # max keeps the first
            self._next_epoch += 1
            self._grant(self.nodes[identity], address, self._next_epoch, 0)

    # -- after a restart ---------------------------------------------------------------

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
        draining = any(address in n.draining for n in self.nodes.values())
        return not draining and self._recovering.get(address) == previous

    def _blocked(self, address: str) -> bool:
        """May a node still hold a lease on this ungranted address?"""
        recovering = self._recovering is None or address in self._recovering
        if recovering and time.monotonic() < self._recover_until:
            return True
        return any(address in n.draining for n in self.nodes.values())

    def end_recovery(self, now: float) -> None:
        """Once the leases from before the start have surely expired, free what waits."""
        if self._recovering is not None and not self._recovering:
            return
        if now < self._recover_until:
            return
        self._recovering = {}
        log.info("leases from before the start have expired")
        for address in list(self._waiting):
            self._free(address)

    def flush(self) -> None:
        """Write the state file if it changed, then announce the grants it now lists."""
        if self._state_dirty:
            held = {
                address: epoch
                for n in self.nodes.values()
                if not n.local
                for address, epoch in [*n.addresses.items(), *n.draining.items()]
            }
            # What the previous broker granted stays listed until its leases expired:
            # a broker that dies again meanwhile must still wait for those.
            for address, epoch in (self._recovering or {}).items():
                held.setdefault(address, epoch)
            try:
                lease_file.write(self._state_file, held)
            except OSError as exc:
                # Unannounced grants wait: a restart must know whom they went to.
                log.error("broker state not written, grants held back", error=str(exc))
                return
            self._state_dirty = False
        held_back, self._held_back = self._held_back, []
        for identity, granted in held_back:
            self._router.send(identity, granted)

    # -- fencing -------------------------------------------------------------------------

    def may_send_as(self, identity: bytes, node: NodeRecord | None, env: Envelope) -> bool:
        """Fencing: may this peer speak as ``env.sender``? Drops and tells it if not."""
        if env.sender.encode() == identity:
            return True
        if node is not None and env.sender == node.node_id:
            return True  # the node answering for itself (Busy, Timeout, NoSuchAddress)
        grant = self.grants.get(env.sender)
        if node is None and identity not in self._presumed_dead:
            message = f"sender {env.sender!r} is not this peer's identity"
            self._router.reply(identity, env, errors.BadRequest(message=message))
            return False
        if grant is not None:
            if grant.node.identity == identity and grant.epoch == env.epoch:
                return True
            log.warning(
                "dropped packet from stale owner",
                address=env.sender,
                epoch=env.epoch,
                current_epoch=grant.epoch,
                peer=peer_name(identity),
            )
            self._router.send(identity, Revoked(address=env.sender, epoch=env.epoch))
            return False
        if node is not None and node.draining.get(env.sender) == env.epoch:
            return True
        log.warning("dropped packet for an address not granted", address=env.sender)
        self._router.send(identity, Revoked(address=env.sender, epoch=env.epoch))
        return False
