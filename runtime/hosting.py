"""The addresses a node hosts: claimed, granted, refused, suspended, stopped.

Guarantees:

* an actor runs only after the broker granted its address to this node and while the
  node's lease (:mod:`runtime.node_lease`) is valid: every hosted actor is stopped
  (suspended) once the lease ran out, before the broker can grant the address
  elsewhere, and resumes when the broker confirms the grant again;
* a revoked grant, or a refusal naming another owner, stops the actor at once; its
  queued requests are answered ``Unavailable`` by the node (:mod:`runtime.inflight`);
* a refused address is kept with its owner (:class:`protocols.errors.NotOwner`); a
  standby claims it again each interval, and takes it over when it is granted;
* a second live process with this node's id makes the node give up (``node_refusal``),
  unless that process is a dead predecessor on this host whose lease still runs;
* :meth:`Hosting.wait_decided` and :meth:`Hosting.wait_granted` wake on every decision.

Grants, refusals and lease checks run on the node's I/O thread; the waits and the
read-only views (:attr:`Hosting.epochs`, :attr:`Hosting.mailboxes`) work from any thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from protocols import errors
from protocols.broker import NODE_PREFIX, Claim, Granted, Ready, Refused, Release, Revoked
from runtime.actor import ActorFactory, Port
from runtime.bus import BusListener
from runtime.inflight import Inflight
from runtime.link import BrokerLink
from runtime.mailbox import Mailbox
from runtime.node_lease import NodeLease

if TYPE_CHECKING:
    from runtime.node import NodeOptions


class Hosting:
    """What a node hosts and what the broker decided about each address."""

    def __init__(
        self,
        node_id: str,
        options: NodeOptions,
        port: Port,
        *,
        link: BrokerLink,
        lease: NodeLease,
        inflight: Inflight,
        bus: BusListener,
        log: Any,
    ) -> None:
        self._node_id = node_id
        self._options = options
        self._port = port
        self._link = link
        self._lease = lease
        self._inflight = inflight
        self._bus = bus
        self._log = log
        self.factories: dict[str, ActorFactory] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.epochs: dict[str, int] = {}
        self.refusals: dict[str, errors.NotOwner] = {}
        # Addresses whose actor was stopped when the lease ran out, to claim again, with
        # the epoch they had (the broker prefers the last holder).
        self._suspended: dict[str, int] = {}
        self.node_refusal: errors.NotOwner | None = None
        self._decided = threading.Condition()

    def add(self, address: str, factory: ActorFactory) -> None:
        """Host an actor at ``address`` once granted; ValueError if already hosted."""
        if address in self.factories:
            raise ValueError(f"{address} is already hosted by node {self._node_id}")
        self.factories[address] = factory

    def wait_decided(self, addresses: Iterable[str], timeout: float) -> bool:
        """Wait until each address is granted or refused (or the node is); False on timeout."""
        wanted = set(addresses)
        with self._decided:
            return self._decided.wait_for(
                lambda: (
                    self.node_refusal is not None
                    or all(a in self.epochs or a in self.refusals for a in wanted)
                ),
                timeout,
            )

    def wait_granted(self, address: str, timeout: float) -> bool:
        """Wait until ``address`` is granted to this node (a standby's takeover)."""
        with self._decided:
            return self._decided.wait_for(lambda: address in self.mailboxes, timeout)

    def _decide(self) -> None:
        with self._decided:
            self._decided.notify_all()

    # -- claims -----------------------------------------------------------------------

    def ready(self, now: float) -> Ready:
        """Hello to the broker, claiming every address this node hosts.

        ``held`` re-claims the addresses whose lease is still valid, at their epochs.
        """
        return Ready(
            node_id=self._node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            addresses=sorted(self.factories),
            held=dict(self.epochs) if self._lease.valid(now) else {},
            previous=dict(self._suspended),
            seq=self._lease.next_seq(),
        )

    def retry_claims(self, now: float) -> None:
        """Claim again what a standby was refused and what a lost lease stopped."""
        if not self._lease.valid(now):
            return
        retry = dict(self._suspended)
        if self._options.standby:
            retry.update((address, 0) for address in self.refusals)
        for address, previous in sorted(retry.items()):
            self._link.send(Claim(address=address, seq=self._lease.next_seq(), previous=previous))

    # -- the broker's decisions ---------------------------------------------------------

    def granted(self, granted: Granted) -> None:
        address = granted.address
        factory = self.factories.get(address)
        if factory is None:
            self._link.send(Release(address=address))
            return
        if not self._lease.valid(time.monotonic()):
            self._suspended[address] = granted.epoch  # claimed again once the lease is renewed
            return
        self._suspended.pop(address, None)
        # A re-claim (same epoch, actor running), not a new grant: no new line.
        renewed = self.epochs.get(address) == granted.epoch and address in self.mailboxes
        self.epochs[address] = granted.epoch
        if self.refusals.pop(address, None) is not None:
            self._log.info("address taken over", address=address, epoch=granted.epoch)
        mailbox = self.mailboxes.get(address)
        if mailbox is None:
            mailbox = Mailbox(
                address,
                factory,
                self._port,
                self._options.restart_policy,
                self._options.mailbox_size,
                epoch=granted.epoch,
            )
            self.mailboxes[address] = mailbox
        mailbox.ctx.epoch = granted.epoch
        if not renewed:
            self._log.info("hosting address", address=address, epoch=granted.epoch)
        self._decide()

    def refused(self, refused: Refused) -> None:
        address = refused.address
        owner = refused.owner
        if address == f"{NODE_PREFIX}{self._node_id}":
            self._node_refused(refused)
            return
        self._suspended.pop(address, None)
        first = address not in self.refusals
        self.refusals[address] = errors.NotOwner(
            address=address,
            owner=owner,
            message=(
                f"{address} is owned by node {owner.node_id} "
                f"(host {owner.host}, pid {owner.pid}, epoch {owner.epoch})"
            ),
        )
        if address in self.mailboxes:
            self.stop_hosting(address, "another node owns it")
        if first:
            # What a standby expects (it waits for the address); a surprise otherwise.
            report = self._log.info if self._options.standby else self._log.error
            report(
                "address refused",
                address=address,
                owner=owner.node_id,
                host=owner.host,
                pid=owner.pid,
            )
        self._decide()

    def _node_refused(self, refused: Refused) -> None:
        """Another process runs with this node id: give up, unless it is our dead predecessor."""
        owner = refused.owner
        if owner.host == socket.gethostname() and not _pid_alive(owner.pid):
            if self.node_refusal is None:
                self._log.info(
                    "a dead process of this node id still holds its lease; waiting for it",
                    pid=owner.pid,
                )
            return  # our heartbeats get Disconnect, so Ready goes out again each interval
        self.node_refusal = errors.NotOwner(
            address=refused.address, owner=owner, message=refused.reason
        )
        self._log.error("node id in use", running_pid=owner.pid, running_host=owner.host)
        self._decide()

    def revoked(self, revoked: Revoked) -> None:
        if self.epochs.get(revoked.address) != revoked.epoch:
            return
        self._log.warning("address revoked", address=revoked.address, epoch=revoked.epoch)
        self.stop_hosting(revoked.address, "its grant was revoked")
        if self._options.standby:
            self._link.send(Claim(address=revoked.address, seq=self._lease.next_seq()))

    # -- stopping ---------------------------------------------------------------------

    def lease_check_time(self) -> float:
        """When the lease next needs checking (monotonic; inf while nothing is hosted)."""
        return self._lease.until if self.epochs else float("inf")

    def check_lease(self, now: float) -> None:
        """Stop every hosted actor once the lease ran out (the broker may move them on)."""
        if not self.epochs or self._lease.valid(now):
            return
        addresses = sorted(self.epochs)
        self._log.warning(
            "lease expired, actors stopped until the broker confirms the grant",
            addresses=addresses,
            silent_s=round(now - self._link.seen, 3),
        )
        for address in addresses:
            self._suspended[address] = self.epochs[address]
            self.stop_hosting(address, "its node lost its lease")

    def stop_hosting(self, address: str, why: str) -> None:
        """Stop an actor whose address we may no longer own, at once.

        Its queued requests are answered ``Unavailable`` by the node (not by the actor,
        whose epoch may be stale); the actor skips them and stops.
        """
        self.epochs.pop(address, None)
        self._bus.forget(address)
        mailbox = self.mailboxes.pop(address, None)
        if mailbox is None:
            return
        mailbox.abandon()
        self._inflight.abandon(address, f"{address} stopped: {why}")


def _pid_alive(pid: int) -> bool:
    """Does a process with this pid run on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
