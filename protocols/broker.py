"""The broker conversation: how nodes register, claim addresses and stay alive.

Stated in one page (Majordomo-style), every packet travelling over a DEALER socket to the
broker's ROUTER:

* node -> broker ``Ready(node_id, host, pid, addresses, held, seq)``: hello; claims each
  address. ``held`` maps the addresses whose lease the node still holds to their epoch
  (a re-claim after a broker restart: the broker grants it again at that epoch);
  ``previous`` the epochs of addresses it held until its lease ran out (a claim that
  waits goes to the node that held the address last).
* broker -> node ``Granted(address, epoch, ack)`` or ``Refused(address, owner)`` per
  claim. A fresh claim for an address whose previous holder may still hold a lease (after
  a broker restart, or while the holder drains) gets no answer until that is decided.
  ``Refused`` with ``address = "node:<node id>"`` refuses the whole node: another live
  process runs with that node id (``owner`` names it).
* node -> broker ``Claim(address, seq)`` / ``Release(address)`` later on.
* node -> broker ``Heartbeat(seq, actors)`` every ``heartbeat_interval_s``; the broker
  answers each at once with ``Heartbeat(ack=seq)``.
* **Leases.** Every packet carrying ``ack`` renews the node's lease on all its addresses
  until the time it *sent* packet ``seq`` plus ``interval * liveness``; a node whose
  lease ran out stops its actors on its own. The broker counts a node's lease from the
  time it *received* its last packet, plus a margin for clock rates and for the node's
  actors to stop (:func:`lease_bounds`), and grants the node's addresses elsewhere only
  after that.
* broker -> node ``Revoked(address, epoch)``: that grant is gone (the node was presumed
  dead and the address moved on); the node must stop the actor.
* node -> broker ``Disconnect``: orderly goodbye after its actors stopped; its addresses
  are free at once.
* A node's socket is named ``<node id>~<instance>`` (``instance`` is random per process
  and never shown), its actor threads' sockets ``<node id>~<instance>~<n>`` (they send
  replies directly); the broker treats those as the node itself, and never sends to them.
* Everything else is an :class:`~protocols.envelope.Envelope`, routed by ``target``.

``GetStatus`` sent to the address ``broker`` is answered with ``Status``.
"""

from __future__ import annotations

import msgspec

from protocols.base import Message, Request
from protocols.errors import Owner

# The part of the lease kept free for clock rate differences between hosts.
CLOCK_MARGIN = 0.1
# A refusal of a whole node (its id is in use) names this address.
NODE_PREFIX = "node:"


def lease_bounds(interval_s: float, liveness: int) -> tuple[float, float]:
    """(lease, expiry): how long a node's lease lasts, how long the broker waits.

    A node's lease lasts ``lease`` from the sending of its last acknowledged packet; the
    broker treats the lease as surely expired ``expiry`` after the last packet it
    received from the node: the lease stretched by :data:`CLOCK_MARGIN`, plus one
    interval for the node's actors to finish stopping.
    """
    lease = interval_s * liveness
    return lease, lease * (1 + CLOCK_MARGIN) + interval_s


class ActorInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One actor as its node reports it."""

    address: str
    state: str
    mailbox: int = 0
    restarts: int = 0
    last_error: str = ""


class Ready(msgspec.Struct, tag="ready", kw_only=True, frozen=True):
    node_id: str
    host: str
    pid: int
    addresses: list[str] = []
    held: dict[str, int] = {}
    previous: dict[str, int] = {}
    seq: int = 0


class Claim(msgspec.Struct, tag="claim", kw_only=True, frozen=True):
    address: str
    seq: int = 0
    previous: int = 0


class Release(msgspec.Struct, tag="release", kw_only=True, frozen=True):
    address: str


class Granted(msgspec.Struct, tag="granted", kw_only=True, frozen=True):
    address: str
    epoch: int
    ack: int = 0


class Refused(msgspec.Struct, tag="refused", kw_only=True, frozen=True):
    address: str
    owner: Owner
    reason: str = ""


class Revoked(msgspec.Struct, tag="revoked", kw_only=True, frozen=True):
    address: str
    epoch: int


class Heartbeat(msgspec.Struct, tag="hb", kw_only=True, frozen=True, omit_defaults=True):
    actors: list[ActorInfo] = []
    seq: int = 0
    ack: int = 0


class Disconnect(msgspec.Struct, tag="bye", kw_only=True, frozen=True):
    pass


class AddressInfo(msgspec.Struct, kw_only=True, frozen=True):
    address: str
    node_id: str
    epoch: int
    state: str = ""
    mailbox: int = 0
    restarts: int = 0
    last_error: str = ""


class NodeInfo(msgspec.Struct, kw_only=True, frozen=True):
    node_id: str
    host: str
    pid: int
    last_seen_s: float
    addresses: list[str] = []


class PeerInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A peer the broker admits and its permissions ("local": this host, everything)."""

    name: str
    names: list[str] = []
    send_to: list[str] = []
    deny: list[str] = []


class Status(Message):
    """The broker's view: live nodes, owned addresses with their epochs and actor state."""

    broker_pid: int
    uptime_s: float
    nodes: list[NodeInfo] = []
    addresses: list[AddressInfo] = []
    failed: list[str] = []
    lease_s: float = 0.0
    expiry_s: float = 0.0
    dropped_sends: int = 0
    peers: list[PeerInfo] = []


class GetStatus(Request[Status]):
    """Ask the broker (address ``broker``) for the state of the whole system."""


MESSAGES: tuple[type[Message], ...] = (GetStatus, Status)
CONTROL = (Ready, Claim, Release, Granted, Refused, Revoked, Heartbeat, Disconnect)
