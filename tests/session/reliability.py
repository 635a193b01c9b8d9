"""What the session reliability tests share: the events an account published, a user
account watching a channel, and the exactly-once check.

Used by the in-process tests (tests/session/test_watchdog.py, events read from the actor's
harness) and the node-process ones (tests/session/test_reliability.py, from the bus).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from telethon import utils
from telethon.tl import types

from protocols import session as s
from protocols.base import Message
from protocols.events import NewPost, SessionState
from runtime.client import Subscriber
from sandbox.control import Channel, Control
from tests.runtime.support import wait_until

HANG_S = 60.0


class EventLog:
    """The events a session actor published so far, read from ``source`` (a bus recorder
    in another thread, or an in-process actor's harness)."""

    def __init__(self, source: Callable[[], list[Message]]) -> None:
        self._source = source

    def events(self) -> list[Message]:
        """The events so far, in publishing order."""
        return self._source()

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


class BusRecorder:
    """Every bus event whose topic starts with one of ``topics``, recorded on a thread."""

    def __init__(self, endpoint: str, topics: list[str]) -> None:
        self._endpoint = endpoint
        self._topics = topics
        self._lock = threading.Lock()
        self._events: list[Message] = []
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
                        self._events.append(got[1])

    def events(self) -> list[Message]:
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def channel_peer_id(channel: Channel) -> int:
    """The marked id (``-100…``) a channel's posts carry in events."""
    return utils.get_peer_id(types.PeerChannel(channel.id))


def news_channel(
    control: Control,
    account: str,
    user: s.User,
    resolve: Callable[[s.ResolvePeer], Message],
    events: EventLog,
) -> Channel:
    """A public channel the logged-in ``user`` is a member of and has resolved; its first
    post has arrived live, before any fault is injected."""
    channel = control.create_channel(f"News {account}", username=f"news_{account}_{user.id}")
    control.add_member(channel.id, user.id)
    resolved = resolve(s.ResolvePeer(peer=channel.username or ""))
    assert isinstance(resolved, s.Peer) and resolved.id == channel_peer_id(channel)
    first = control.post(channel.id, "before")
    events.wait(lambda: first.id in events.posts(resolved.id), "the first post to arrive live")
    return channel


def assert_exactly_once(events: EventLog, channel: Channel, posted: list[int]) -> None:
    """Every id in ``posted`` arrives as a NewPost; no post of the channel arrives twice."""
    peer = channel_peer_id(channel)
    events.wait(
        lambda: set(posted) <= set(events.posts(peer)), f"posts {posted} to arrive as NewPost"
    )
    counts = Counter(events.posts(peer))
    assert [m for m, n in counts.items() if n > 1] == [], f"duplicate NewPost: {counts}"


def states_after(events: EventLog, account: str, start: int) -> list[str]:
    """The account's SessionState names from index ``start`` of its states on."""
    return events.states(account)[start:]


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    """Whether ``wanted`` occurs in ``seen`` in order (other items may come between)."""
    it = iter(seen)
    return all(any(item == w for item in it) for w in wanted)
