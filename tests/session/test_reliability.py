"""Reliability of the session actor across processes: real node processes, real Telethon,
the sandbox.

The node process is stopped or killed (SIGTERM, SIGKILL); a subscriber on the bus records
every event, and each test asserts what the guarantees promise: every channel post
delivered exactly once, never lost, never twice, and no message sent twice. Faults inside
one running actor (flood waits, dropped and silent connections) are tested in process, in
tests/session/test_watchdog.py.

Waits have generous upper bounds only to turn a hang into a failure; nothing asserts how
fast anything happened.
"""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator

import pytest

from protocols import session as s
from protocols.base import Message
from protocols.events import post_topic, session_topic
from runtime.client import Client
from sandbox.control import Channel
from tests.runtime.support import Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.reliability import (
    HANG_S,
    BusRecorder,
    EventLog,
    assert_exactly_once,
    channel_peer_id,
    news_channel,
)
from tests.session.support import CALL_TIMEOUT, log_in


@pytest.fixture
def events(sessions: Sessions, broker: Proc) -> Iterator[EventLog]:
    recorder = BusRecorder(sessions.events_out, [session_topic(), post_topic()])
    yield EventLog(recorder.events)
    recorder.close()


def user_with_channel(
    sessions: Sessions, client: Client, events: EventLog, account: str = "alice"
) -> tuple[s.User, Channel]:
    """A logged-in user account on node ``n1``, member of a public channel it has resolved."""
    assert sessions.sandbox is not None
    phone, _ = sessions.add_user(account)
    sessions.node("n1", account)
    assert sessions.procs[-1].has_logged("hosting address")
    user = log_in(sessions, client, account, phone)

    def resolve(body: s.ResolvePeer) -> Message:
        return client.request(f"session:{account}", body, timeout=CALL_TIMEOUT)

    return user, news_channel(sessions.sandbox.control, account, user, resolve, events)


def restarts(sessions: Sessions, address: str) -> int:
    """The supervisor's restart count of an address, from ``run.py status``."""
    entry = next(a for a in sessions.status().addresses if a.address == address)
    return entry.restarts


# -- restarts of the node process --------------------------------------------------------


def saved_channel_pts(sessions: Sessions, account: str, channel: Channel) -> int:
    """The channel's pts in the account's session file (0 if none is saved yet).

    Read-only and brief, so the owner's writes are never held up for long.
    """
    path = sessions.data_dir / "sessions" / f"{account}.session"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("select pts from update_state where id = ?", (channel.id,)).fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def restart_node(sessions: Sessions, client: Client, node_id: str, account: str) -> Proc:
    """Start a new node for ``account`` once the broker has released the old owner."""
    address = f"session:{account}"
    wait_until(lambda: sessions.owner_of(address) is None, HANG_S, f"{address} to be released")
    proc = sessions.node(node_id, account)
    assert proc.has_logged("hosting address"), proc.log_text()[-2000:]
    sessions.wait_state(client, account, "authorized", timeout=HANG_S)
    return proc


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_node_restart_delivers_downtime_posts_exactly_once(
    sessions: Sessions, client: Client, events: EventLog, how: str
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    _, channel = user_with_channel(sessions, client, events)
    node = sessions.procs[-1]
    seen = [control.post(channel.id, f"seen {i}").id for i in range(3)]
    assert_exactly_once(events, channel, seen)
    # The state is saved as it advances, while running: a kill -9 skips every shutdown hook.
    pts = control.channel(channel.id).pts
    wait_until(
        lambda: saved_channel_pts(sessions, "alice", channel) == pts,
        HANG_S,
        "the channel's pts to be saved in the session file",
    )

    if how == "SIGTERM":
        assert node.stop() == 0, node.log_text()[-2000:]
    else:
        node.signal(signal.SIGKILL)
        node.popen.wait(HANG_S)
    down = [control.post(channel.id, f"while down {i}").id for i in range(5)]
    started = time.monotonic()
    restart_node(sessions, client, "n2", "alice")
    assert_exactly_once(events, channel, [*seen, *down])
    caught_up = time.monotonic() - started
    after = control.post(channel.id, "after").id
    assert_exactly_once(events, channel, [*seen, *down, after])
    # Nothing delivered before the restart came again (the first post included).
    assert len(events.posts(channel_peer_id(channel))) == 1 + len(seen) + len(down) + 1
    print(f"{how}: restarted and caught up in {caught_up:.2f}s")
    assert restarts(sessions, "session:alice") == 0


# -- idempotency across restarts ----------------------------------------------------------


def test_send_message_repeat_after_a_node_restart_sends_nothing(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    """The actor's memory of keys dies with the node; Telegram's random_id dedup does not."""
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    sessions.add_bot("bot")
    carol = control.create_user("+16669990001", "Carol", username="carol_restart")
    node = sessions.node("n1", "bot")
    sessions.wait_state(client, "bot", "authorized")
    body = s.SendMessage(peer="carol_restart", text="exactly once")
    k = uuid.uuid4().hex
    first = client.request("session:bot", body, timeout=CALL_TIMEOUT, idempotency_key=k)
    assert isinstance(first, s.Sent)

    assert node.stop() == 0
    sessions.node("n2", "bot")
    sessions.wait_state(client, "bot", "authorized")
    again = client.request("session:bot", body, timeout=CALL_TIMEOUT, idempotency_key=k)
    assert isinstance(again, s.Sent) and again.message.id == first.message.id
    assert [m.text for m in control.inbox(carol.id)] == ["exactly once"]
