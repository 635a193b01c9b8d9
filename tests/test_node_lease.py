"""A node's lease: renewed by the broker's acknowledgements, counted from the sending."""

from __future__ import annotations

import time

from runtime.node_lease import NodeLease

LEASE_S = 60.0


def test_a_new_lease_is_not_valid() -> None:
    lease = NodeLease(LEASE_S)
    assert not lease.valid(time.monotonic())


def test_an_acknowledgement_renews_the_lease_from_the_packets_sending() -> None:
    lease = NodeLease(LEASE_S)
    before = time.monotonic()
    seq = lease.next_seq()
    after = time.monotonic()
    lease.acknowledged(seq)
    assert before + LEASE_S <= lease.until <= after + LEASE_S
    assert lease.valid(time.monotonic())


def test_an_unknown_sequence_number_renews_nothing() -> None:
    lease = NodeLease(LEASE_S)
    seq = lease.next_seq()
    lease.acknowledged(seq + 1)
    assert lease.until == 0.0
