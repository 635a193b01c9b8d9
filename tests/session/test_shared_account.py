"""The seeds' failure, reproduced and gone: many processes working through one account.

In the seeds, a bot, a parser and an API process each opened the same Telethon SQLite
session file: ``database is locked`` dozens of times an hour, entity writes lost, requests
failing although their side effect happened. Here 4 separate client processes, each
running a bot's, a parser's and an API's mix of requests (resolve, history, send, get_me)
on its own threads, work through the account's one session actor for 30 s
(``SWITCHBOARD_SOAK_S`` shortens it where CI time demands). Afterwards:

* no log of any process mentions ``database is locked``;
* every request was answered with its result (sent == answered, no error at all);
* the session file, opened after the node stopped, holds every peer that was resolved;
* every message sent is in the sandbox exactly once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections import Counter
from typing import Any

from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions

SOAK_S = float(os.environ.get("SWITCHBOARD_SOAK_S", "30"))
PROCESSES = 4
CHANNELS = 30
USERS = 10
# The proactive rate limits are raised for the soak: it tests serialization under load,
# not rationing (tested in tests/test_flood.py). Nothing else is changed.
GENEROUS = "{ rate_per_s = 100000.0, burst = 100000 }"
LIMITS = f"{{ resolve = {GENEROUS}, send = {GENEROUS}, history = {GENEROUS} }}"
WORKER = "from tests.session.soak_worker import main; main()"


def log_in(sessions: Sessions, client: Client, account: str, phone: str) -> None:
    """Log a configured user account in through its session actor, with the sandbox's code."""
    assert sessions.sandbox is not None
    sessions.wait_state(client, account, "unauthorized")
    address = f"session:{account}"
    assert isinstance(client.request(address, s.StartLogin(phone=phone), 30), s.CodeSent)
    code = sessions.sandbox.control.last_login_code(phone)
    assert code
    assert isinstance(client.request(address, s.SubmitCode(code=code), 30), s.LoggedIn)


def session_entity_ids(sessions: Sessions, account: str) -> set[int]:
    """The peer ids in the entities table of the account's session file."""
    path = sessions.data_dir / "sessions" / f"{account}.session"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {int(row[0]) for row in db.execute("select id from entities")}
    finally:
        db.close()


def test_four_processes_share_one_account_without_locks_or_losses(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    phone, me = sessions.add_user("shared", limits=LIMITS)
    node = sessions.node("n1", "shared")
    log_in(sessions, client, "shared", phone)

    # The world: a feed to read, a sink to write to, and peers to resolve.
    feed = control.create_channel("Feed", username="soak_feed")
    control.add_member(feed.id, me.id)
    for i in range(30):
        control.post(feed.id, f"feed post {i}")
    sink = control.create_user("+19990000001", "Sink", username="soak_sink")
    peers = [control.create_channel(f"Peer {i}", username=f"soak_chan{i}") for i in range(CHANNELS)]
    users = [
        control.create_user(f"+1999100{i:04d}", f"User {i}", username=f"soak_user{i}")
        for i in range(USERS)
    ]
    usernames = [p.username or "" for p in peers] + [u.username or "" for u in users]

    started = time.monotonic()
    workers = [
        sessions.python(
            WORKER,
            f"w{n}",
            "shared",
            str(SOAK_S),
            ",".join(usernames),
            "soak_feed",
            "soak_sink",
        )
        for n in range(PROCESSES)
    ]
    results: list[dict[str, Any]] = []
    stderr = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=SOAK_S + 120)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, err = worker.communicate()
        stderr.append(err)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.monotonic() - started

    sent: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for result in results:
        sent.update(result["sent"])
        answered.update(result["answered"])
    errors = [e for result in results for e in result["errors"]]
    resolved = {peer: i for result in results for peer, i in result["resolved"].items()}
    messages = [m for result in results for m in result["messages"]]
    print(
        f"soak {SOAK_S:g}s, {PROCESSES} processes: {sum(sent.values())} requests "
        f"({dict(sent)}), {sum(sent.values()) / elapsed:.0f}/s, {len(resolved)} peers "
        f"resolved, {len(messages)} messages sent"
    )

    # Every request answered with its result.
    assert errors == []
    assert sent == answered
    assert all(sent[op] > 0 for op in ("GetMe", "ResolvePeer", "FetchHistory", "SendMessage"))
    assert set(resolved) == set(usernames)
    status = next(a for a in sessions.status().addresses if a.address == "session:shared")
    assert status.restarts == 0

    # Every message sent is in the sandbox exactly once.
    received = Counter(m.text for m in control.inbox(sink.id, me.id))
    assert [t for t, n in received.items() if n > 1] == []
    assert set(received) == {m["text"] for m in messages}
    assert len(messages) == len({m["key"] for m in messages}) == sum(received.values())

    # No lost entity writes: after the node stopped, the file holds every resolved peer.
    assert node.stop() == 0
    entities = session_entity_ids(sessions, "shared")
    missing = {peer: i for peer, i in resolved.items() if i not in entities}
    assert missing == {}

    logs = [proc.log_text() for proc in sessions.procs] + stderr
    assert not any("database is locked" in text for text in logs)
