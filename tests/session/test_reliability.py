"""Reliability of the session actor, end to end: real node processes, real Telethon, the sandbox.

Faults are injected in the sandbox (FLOOD_WAIT, dropped connections, delays) or done to
the node process (SIGTERM, SIGKILL); a subscriber on the bus records every event, and each
test asserts what the guarantees promise: flood waits confined to their method, state
changes published, and every channel post delivered exactly once, never lost, never twice.

Waits have generous upper bounds only to turn a hang into a failure; nothing asserts how
fast anything happened.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from telethon import utils
from telethon.tl import types

from protocols import errors
from protocols import session as s
from protocols.base import Message
from protocols.events import NewPost, SessionState, post_topic, session_topic
from runtime.client import Client, Subscriber
from runtime.errors import RequestError
from sandbox.control import Channel
from tests.runtime.support import Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT

# Generous bounds that only turn a hang into a failure.
HANG_S = 60.0


class EventLog:
    """Every bus event whose topic starts with one of ``topics``, recorded on a thread."""

    def __init__(self, endpoint: str, topics: list[str]) -> None:
        self._endpoint = endpoint
        self._topics = topics
        self._lock = threading.Lock()
        self._events: list[tuple[str, Message]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        # A ZeroMQ socket belongs to the thread that made it.
        with Subscriber(self._endpoint, self._topics) as sub:
            self._ready.set()
            while not self._stop.is_set():
                got = sub.receive(0.1)
                if got is not None:
                    with self._lock:
                        self._events.append(got)

    def events(self) -> list[Message]:
        """The events so far, in arrival order."""
        with self._lock:
            return [event for _, event in self._events]

    def states(self, account: str) -> list[str]:
        """The account's SessionState names so far, in order."""
        return [
            e.state for e in self.events() if isinstance(e, SessionState) and e.account == account
        ]

    def posts(self, channel_id: int) -> list[int]:
        """The message ids of the NewPost events of one channel so far, in arrival order."""
        return [
            e.message.id
            for e in self.events()
            if isinstance(e, NewPost) and e.channel_id == channel_id
        ]

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = HANG_S) -> None:
        """Wait until ``predicate()`` is true; AssertionError after ``timeout``."""
        wait_until(predicate, timeout, what)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def events(sessions: Sessions, broker: Proc) -> Iterator[EventLog]:
    log = EventLog(sessions.events_out, [session_topic(), post_topic()])
    yield log
    log.close()


def log_in(sessions: Sessions, client: Client, account: str, phone: str) -> s.User:
    """Log a configured user account in through its session actor, with the sandbox's code."""
    assert sessions.sandbox is not None
    sessions.wait_state(client, account, "unauthorized")
    address = f"session:{account}"
    sent = client.request(address, s.StartLogin(phone=phone), timeout=30)
    assert isinstance(sent, s.CodeSent)
    code = sessions.sandbox.control.last_login_code(phone)
    assert code
    logged = client.request(address, s.SubmitCode(code=code), timeout=30)
    assert isinstance(logged, s.LoggedIn), logged
    return logged.user


def channel_peer_id(channel: Channel) -> int:
    """The marked id (``-100…``) a channel's posts carry in events."""
    return utils.get_peer_id(types.PeerChannel(channel.id))


def user_with_channel(
    sessions: Sessions, client: Client, events: EventLog, account: str = "alice"
) -> tuple[s.User, Channel]:
    """A logged-in user account on node ``n1``, member of a public channel it has resolved."""
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    phone, _ = sessions.add_user(account)
    sessions.node("n1", account)
    assert sessions.procs[-1].has_logged("hosting address")
    user = log_in(sessions, client, account, phone)
    channel = control.create_channel(f"News {account}", username=f"news_{account}_{user.id}")
    control.add_member(channel.id, user.id)
    resolved = client.request(f"session:{account}", s.ResolvePeer(peer=channel.username), 30)
    assert isinstance(resolved, s.Peer) and resolved.id == channel_peer_id(channel)
    # The account sees live posts before any fault is injected.
    first = control.post(channel.id, "before")
    events.wait(lambda: first.id in events.posts(resolved.id), "the first post to arrive live")
    return user, channel


def assert_exactly_once(events: EventLog, channel: Channel, posted: list[int]) -> None:
    """Every id in ``posted`` arrives as a NewPost; no post of the channel arrives twice."""
    peer = channel_peer_id(channel)
    events.wait(
        lambda: set(posted) <= set(events.posts(peer)), f"posts {posted} to arrive as NewPost"
    )
    counts = Counter(events.posts(peer))
    assert [m for m, n in counts.items() if n > 1] == [], f"duplicate NewPost: {counts}"


def restarts(sessions: Sessions, address: str) -> int:
    """The supervisor's restart count of an address, from ``run.py status``."""
    entry = next(a for a in sessions.status().addresses if a.address == address)
    return entry.restarts


# -- flood wait --------------------------------------------------------------------------


def test_flood_wait_confined_to_its_method(
    sessions: Sessions, client: Client, events: EventLog
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    _, channel = user_with_channel(sessions, client, events)
    address = "session:alice"
    peer = channel_peer_id(channel)
    history = s.FetchHistory(peer=peer, limit=10)
    assert isinstance(client.request(address, history, timeout=30), s.History)

    flood_s = 4
    control.flood("messages.getHistory", seconds=flood_s, count=1)

    # A deadline shorter than the wait: FloodWait at once, retry_after as Telegram said.
    with pytest.raises(RequestError) as raised:
        client.request(address, history, timeout=1.5)
    error = raised.value.error
    assert isinstance(error, errors.FloodWait), error
    assert flood_s - 1 < error.retry_after <= flood_s
    assert error.method.endswith("getHistory")
    events.wait(
        lambda: any(
            isinstance(e, SessionState) and e.state == "flood-wait" and e.retry_after == flood_s
            for e in events.events()
        ),
        "a flood-wait SessionState event",
    )

    # A deadline longer than the wait: the request waits it out, then succeeds. Meanwhile
    # other methods answer: their replies come back while the history request is pending.
    waiting = client.send(address, history, timeout=flood_s + 30)
    replies: dict[str, Message] = {}
    others = [s.GetMe(), s.ResolvePeer(peer=channel.username or ""), s.GetMe()]
    for body in others:
        sent = client.send(address, body, timeout=30)
        while sent not in replies:
            got = client.receive(HANG_S)
            assert got is not None, f"no answer to {body}"
            replies[got[0]] = got[1]
        assert waiting not in replies, f"{type(body).__name__} waited behind the flood wait"
        assert isinstance(replies[sent], (s.Me, s.Peer)), replies[sent]
    while waiting not in replies:
        got = client.receive(HANG_S)
        assert got is not None, "no answer to the waiting FetchHistory"
        replies[got[0]] = got[1]
    assert isinstance(replies[waiting], s.History), replies[waiting]
    assert control.calls("messages.getHistory")["messages.getHistory"] == 3

    assert restarts(sessions, address) == 0


# -- dropped and silent connections ----------------------------------------------------


def states_after(events: EventLog, account: str, start: int) -> list[str]:
    """The account's SessionState names from index ``start`` of its states on."""
    return events.states(account)[start:]


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    """Whether ``wanted`` occurs in ``seen`` in order (other items may come between)."""
    it = iter(seen)
    return all(any(item == w for item in it) for w in wanted)


def test_dropped_connection_reconnects_and_catches_up_exactly_once(
    sessions: Sessions, client: Client, events: EventLog
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    user, channel = user_with_channel(sessions, client, events)
    mark = len(events.states("alice"))

    # Every call of the account drops its connection until the fault is cleared.
    control.drop(None, count=None, user_id=user.id)
    events.wait(
        lambda: "disconnected" in states_after(events, "alice", mark),
        "the watchdog to report the connection down",
    )
    posted = [control.post(channel.id, f"while down {i}").id for i in range(5)]
    control.clear_faults()
    cleared = time.monotonic()

    events.wait(
        lambda: is_subsequence(
            ["disconnected", "connecting", "connected", "authorized"],
            states_after(events, "alice", mark),
        ),
        "the session to reconnect and authorize",
    )
    reconnected = time.monotonic() - cleared
    assert_exactly_once(events, channel, posted)
    # Posts after the reconnect arrive live, once, as before.
    after = control.post(channel.id, "after").id
    assert_exactly_once(events, channel, [*posted, after])
    print(f"reconnected {reconnected:.2f}s after the fault cleared")
    assert restarts(sessions, "session:alice") == 0


def test_silent_connection_detected_reconnected_and_caught_up_exactly_once(
    sessions: Sessions, client: Client, events: EventLog
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    user, channel = user_with_channel(sessions, client, events)
    mark = len(events.states("alice"))

    # The connection stays up but goes silent: nothing is answered, nothing is pushed.
    stalled = time.monotonic()
    control.stall(user_id=user.id)
    events.wait(
        lambda: "disconnected" in states_after(events, "alice", mark),
        "the watchdog to notice the silent connection",
    )
    detected = time.monotonic() - stalled
    posted = [control.post(channel.id, f"while silent {i}").id for i in range(5)]
    # Reconnecting into the same silence fails, is reported, and is retried.
    events.wait(
        lambda: is_subsequence(
            ["disconnected", "connecting", "disconnected", "connecting"],
            states_after(events, "alice", mark),
        ),
        "a failed reconnect attempt to be reported and retried",
    )
    assert [p for p in events.posts(channel_peer_id(channel)) if p in posted] == []
    control.clear_faults()
    cleared = time.monotonic()

    events.wait(
        lambda: states_after(events, "alice", mark)[-1:] == ["authorized"],
        "the session to reconnect and authorize",
    )
    reconnected = time.monotonic() - cleared
    assert_exactly_once(events, channel, posted)
    after = control.post(channel.id, "after").id
    assert_exactly_once(events, channel, [*posted, after])
    print(f"silence detected after {detected:.2f}s, reconnected {reconnected:.2f}s after clearing")
    status = client.request("session:alice", s.GetSessionStatus(), timeout=10)
    assert isinstance(status, s.SessionStatus) and status.reconnects >= 2
    assert restarts(sessions, "session:alice") == 0


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
