"""One client process of the shared-account soak (tests/session/test_shared_account.py).

Runs what a bot, a parser and an API process of the seeds did against one account, each
role on its own thread with its own client, all through ``session:<account>``, until the
duration is over; then prints one JSON line: requests sent and answered by type, every
error, the peers resolved and the messages sent.

    python -c "from tests.session.soak_worker import main; main()" \
        NAME ACCOUNT DURATION_S PEERS HISTORY_PEER SINK

PEERS is a comma-separated list of usernames to resolve. The broker endpoint comes from
the settings (``switchboard.toml`` in the working directory and the environment), as for
every program.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from config import load_settings
from protocols import session as s
from protocols.base import Message
from runtime.errors import RequestError
from runtime.launcher import client_for

# Generous: a request is expected to be answered long before; this only bounds a hang.
REQUEST_TIMEOUT_S = 30.0

ROLES: dict[str, tuple[str, ...]] = {
    "bot": ("GetMe", "SendMessage", "ResolvePeer"),
    "parser": ("ResolvePeer", "FetchHistory", "ResolvePeer", "FetchHistory"),
    "api": ("GetMe", "ResolvePeer", "FetchHistory", "SendMessage"),
}


@dataclass
class Tally:
    """What one role's thread did."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    resolved: dict[str, int] = field(default_factory=dict)
    messages: list[dict[str, object]] = field(default_factory=list)


@dataclass
class Job:
    """The soak's parameters, as given on the command line."""

    name: str
    account: str
    duration_s: float
    peers: list[str]
    history_peer: str
    sink: str


def run_role(job: Job, role: str, offset: int, tally: Tally) -> None:
    """Issue ``role``'s mix of requests until the duration is over; record every outcome."""
    settings = load_settings()
    address = f"session:{job.account}"
    ops = ROLES[role]
    give_up = time.monotonic() + job.duration_s
    step = 0
    identity = f"client:{job.name}-{role}-{uuid.uuid4().hex[:8]}"
    with client_for(settings, identity=identity) as client:
        while time.monotonic() < give_up:
            op = ops[step % len(ops)]
            peer = job.peers[(offset + step * 7) % len(job.peers)]
            key = ""
            body: Message
            if op == "GetMe":
                body = s.GetMe()
            elif op == "ResolvePeer":
                body = s.ResolvePeer(peer=peer)
            elif op == "FetchHistory":
                body = s.FetchHistory(peer=job.history_peer, limit=20)
            else:
                key = f"{job.name}-{role}-{step}-{uuid.uuid4().hex}"
                body = s.SendMessage(peer=job.sink, text=f"soak {key}")
            step += 1
            tally.sent[op] += 1
            try:
                reply = client.request(address, body, REQUEST_TIMEOUT_S, idempotency_key=key)
            except RequestError as exc:
                tally.errors.append(f"{op}: {type(exc.error).__name__}: {exc.error.message}")
                continue
            tally.answered[op] += 1
            if isinstance(reply, s.Peer) and isinstance(body, s.ResolvePeer):
                tally.resolved[peer] = reply.id
            elif isinstance(reply, s.Sent) and isinstance(body, s.SendMessage):
                tally.messages.append({"key": key, "text": body.text, "id": reply.message.id})
            elif not isinstance(reply, (s.Me, s.History)):
                tally.errors.append(f"{op}: unexpected reply {type(reply).__name__}")


def main() -> None:
    """Run every role on its own thread; print the combined tally as one JSON line."""
    name, account, duration, peers, history_peer, sink = sys.argv[1:7]
    job = Job(name, account, float(duration), peers.split(","), history_peer, sink)
    tallies = {role: Tally() for role in ROLES}
    offset = sum(map(ord, name))
    threads = [
        threading.Thread(target=run_role, args=(job, role, offset + i, tallies[role]))
        for i, role in enumerate(ROLES)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies.values():
        total.sent.update(tally.sent)
        total.answered.update(tally.answered)
        total.errors.extend(tally.errors)
        total.resolved.update(tally.resolved)
        total.messages.extend(tally.messages)
    print(
        json.dumps(
            {
                "sent": dict(total.sent),
                "answered": dict(total.answered),
                "errors": total.errors,
                "resolved": total.resolved,
                "messages": total.messages,
            }
        )
    )


if __name__ == "__main__":
    main()
