"""The session actor answers through the runtime, from another process, against the sandbox."""

from __future__ import annotations

from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions


def test_bot_session_answers_get_me(sessions: Sessions, broker: Proc, client: Client) -> None:
    bot = sessions.add_bot("alice")
    sessions.node("n1", "alice")
    sessions.wait_state(client, "alice", "authorized")
    me = client.request("session:alice", s.GetMe(), timeout=10)
    assert isinstance(me, s.Me)
    assert me.user.id == bot.id and me.user.bot
