"""The broker conversation: how nodes register, claim addresses and stay alive.

Stated in one page (Majordomo-style), every packet travelling over a DEALER socket to the
broker's ROUTER:

* node -> broker ``Ready(node_id, host, pid, addresses)``: hello; claims each address.
* broker -> node ``Granted(address, epoch)`` or ``Refused(address, owner)`` per claim.
* node -> broker ``Claim(address)`` / ``Release(address)`` later on.
* both ways ``Heartbeat`` every ``heartbeat_interval_s``; the node's carries its actors'
  state. A peer silent for ``heartbeat_liveness`` intervals is dead: the broker releases
  a dead node's addresses; a node re-sends ``Ready`` to a broker it thinks dead.
* broker -> node ``Revoked(address, epoch)``: that grant is gone (the node was presumed
  dead and the address moved on); the node must stop the actor.
* node -> broker ``Disconnect``: orderly goodbye; its addresses are released at once.
* A node may also send envelopes from extra sockets with identity ``<node id>~<n>`` (its
  actor threads send replies directly); the broker treats them as the node itself, and
  never sends to them.
* Everything else is an :class:`~protocols.envelope.Envelope`, routed by ``target``.

``GetStatus`` sent to the address ``broker`` is answered with ``Status``.
"""

from __future__ import annotations

import msgspec

from protocols.base import Message, Request
from protocols.errors import Owner


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


class Claim(msgspec.Struct, tag="claim", kw_only=True, frozen=True):
    address: str


class Release(msgspec.Struct, tag="release", kw_only=True, frozen=True):
    address: str


class Granted(msgspec.Struct, tag="granted", kw_only=True, frozen=True):
    address: str
    epoch: int


class Refused(msgspec.Struct, tag="refused", kw_only=True, frozen=True):
    address: str
    owner: Owner
    reason: str = ""


class Revoked(msgspec.Struct, tag="revoked", kw_only=True, frozen=True):
    address: str
    epoch: int


class Heartbeat(msgspec.Struct, tag="hb", kw_only=True, frozen=True, omit_defaults=True):
    actors: list[ActorInfo] = []


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


class Status(Message):
    """The broker's view: live nodes, owned addresses with their epochs and actor state."""

    broker_pid: int
    uptime_s: float
    nodes: list[NodeInfo] = []
    addresses: list[AddressInfo] = []
    failed: list[str] = []


class GetStatus(Request[Status]):
    """Ask the broker (address ``broker``) for the state of the whole system."""


MESSAGES: tuple[type[Message], ...] = (GetStatus, Status)
CONTROL = (Ready, Claim, Release, Granted, Refused, Revoked, Heartbeat, Disconnect)
