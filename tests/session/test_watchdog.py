"""Faults inside one running session actor: flood waits, dropped and silent connections.

The actor is hosted in this process (``Hosted``: a real SessionActor in a real mailbox,
real Telethon against the sandbox) and what it publishes is read from its harness. Faults
are injected in the sandbox (FLOOD_WAIT, dropped connections, stalls); each test asserts
what the guarantees promise: flood waits confined to their method, state changes
published, every channel post delivered exactly once, and the actor never restarted.

Waits have generous upper bounds only to turn a hang into a failure; nothing asserts how
fast anything happened.
"""

from __future__ import annotations

import time

from protocols import errors
from protocols import session as s
from protocols.base import Message
from protocols.events import SessionState
from runtime.testing import ActorHarness
from sandbox import SandboxThread
from sandbox.control import Channel
from tests.session.reliability import (
    HANG_S,
    EventLog,
    assert_exactly_once,
    channel_peer_id,
    is_subsequence,
    news_channel,
    states_after,
)
from tests.session.support import CALL_TIMEOUT, Hosted


def user_with_channel(
    hosted: Hosted, sandbox: SandboxThread, account: str = "alice"
) -> tuple[ActorHarness, EventLog, s.User, Channel]:
    """A logged-in user account hosted here, member of a public channel it has resolved."""
    phone, _ = hosted.sessions.add_user(account)
    actor = hosted.start(account)
    events = EventLog(lambda: actor.port.events_of(Message))
    user = hosted.log_in(account, phone)

    def resolve(body: s.ResolvePeer) -> Message:
        return actor.request(body, timeout=CALL_TIMEOUT)

    return actor, events, user, news_channel(sandbox.control, account, user, resolve, events)


def test_flood_wait_confined_to_its_method(hosted: Hosted, sandbox: SandboxThread) -> None:
    control = sandbox.control
    alice, events, _, channel = user_with_channel(hosted, sandbox)
    history = s.FetchHistory(peer=channel_peer_id(channel), limit=10)
    assert isinstance(alice.request(history, timeout=CALL_TIMEOUT), s.History)

    flood_s = 4
    control.flood("messages.getHistory", seconds=flood_s, count=1)

    # A deadline shorter than the wait: FloodWait at once, retry_after as Telegram said.
    error = alice.ask(history, timeout=1.5)
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
    waiting = alice.send(history, timeout=flood_s + 30)
    for body in (s.GetMe(), s.ResolvePeer(peer=channel.username or ""), s.GetMe()):
        reply = alice.ask(body, timeout=CALL_TIMEOUT)
        assert isinstance(reply, (s.Me, s.Peer)), reply
        assert waiting not in alice.port.replies, f"{type(body).__name__} waited behind it"
    assert isinstance(alice.reply(waiting, HANG_S), s.History)
    assert control.calls("messages.getHistory")["messages.getHistory"] == 3
    assert alice.mailbox.info().restarts == 0


def test_dropped_connection_reconnects_and_catches_up_exactly_once(
    hosted: Hosted, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    alice, events, user, channel = user_with_channel(hosted, sandbox)
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
    assert alice.mailbox.info().restarts == 0


def test_silent_connection_detected_reconnected_and_caught_up_exactly_once(
    hosted: Hosted, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    alice, events, user, channel = user_with_channel(hosted, sandbox)
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
    status = alice.request(s.GetSessionStatus(), timeout=CALL_TIMEOUT)
    assert status.reconnects >= 2
    assert alice.mailbox.info().restarts == 0
