"""Many bot accounts in one node: set-up, and requests sent to all of them at once.

Shared by ``test_many_accounts`` and ``tests/benchmarks/accounts_scale.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from protocols import session as s
from protocols.base import Message
from runtime.client import Client
from tests.runtime.support import wait_until
from tests.session.conftest import Sessions

# Timing as deployed: the test defaults (a watchdog ping every second, a 0.6 s lease) would
# measure the watchdogs of hundreds of accounts, and lose the lease while they all boot.
DEPLOYED_TIMING = {
    "SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S": "1",
    "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS": "5",
    "SWITCHBOARD__SESSION__WATCHDOG_INTERVAL_S": "30",
    "SWITCHBOARD__SESSION__PING_TIMEOUT_S": "30",
    "SWITCHBOARD__SESSION__STATE_SAVE_INTERVAL_S": "5",
}


def add_bots(sessions: Sessions, count: int) -> dict[str, int]:
    """``count`` new sandbox bots configured as accounts ``b0``...; {account: bot id}."""
    return {f"b{i}": sessions.add_bot(f"b{i}").id for i in range(count)}


def ask_all(
    client: Client,
    targets: Iterable[str],
    body: Message,
    timeout: float,
    *,
    partial: bool = False,
) -> dict[str, Message]:
    """Send ``body`` to every target at once and collect one reply each.

    Raises AssertionError naming how many replies are missing after ``timeout``, unless
    ``partial``: then the replies that came are returned.
    """
    sent = {client.send(target, body, timeout=timeout): target for target in targets}
    replies: dict[str, Message] = {}
    give_up = time.monotonic() + timeout + 1
    while len(replies) < len(sent):
        got = client.receive(max(0.0, give_up - time.monotonic()))
        if got is None:
            if partial:
                return replies
            raise AssertionError(f"{len(sent) - len(replies)} of {len(sent)} replies missing")
        request_id, reply = got
        if request_id in sent:  # a late reply of an earlier round is no answer here
            replies[sent[request_id]] = reply
    return replies


def wait_authorized(client: Client, accounts: Iterable[str], timeout: float) -> None:
    """Wait until every account's session actor reports ``authorized``.

    An actor still booting answers nothing yet (its mailbox opens once it is connected),
    so a missing reply is "not yet", asked again in the next round.
    """
    waiting = set(accounts)

    def all_authorized() -> bool:
        targets = [f"session:{a}" for a in waiting]
        statuses = ask_all(client, targets, s.GetSessionStatus(), 10, partial=True)
        for target, status in statuses.items():
            if isinstance(status, s.SessionStatus) and status.state == "authorized":
                waiting.discard(target.removeprefix("session:"))
        return not waiting

    wait_until(all_authorized, timeout, f"{len(waiting)} accounts to be authorized")


def node_figures(pid: int) -> tuple[float, int]:
    """A process's resident memory in MB and its thread count (from /proc)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])
