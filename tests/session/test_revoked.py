"""A session whose auth key the server no longer knows (revoked): never a silent loop."""

from __future__ import annotations

from protocols import errors
from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT, log_in, refused


def test_bot_starts_a_new_key_and_logs_in_again(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    bot = sessions.add_bot("alice")
    sessions.node("n1", "alice")
    sessions.wait_state(client, "alice", "authorized")

    sessions.sandbox.control.forget_auth_keys(bot.id)
    sessions.wait_state(client, "alice", "connecting", timeout=60)
    sessions.wait_state(client, "alice", "authorized", timeout=60)

    me = client.request("session:alice", s.GetMe(), timeout=CALL_TIMEOUT)
    assert isinstance(me, s.Me) and me.user.id == bot.id


def test_user_is_failed_until_logged_in_again(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    phone, user = sessions.add_user("carol")
    sessions.node("n1", "carol")
    log_in(sessions, client, "carol", phone)

    sessions.sandbox.control.forget_auth_keys(user.id)
    sessions.wait_state(client, "carol", "failed", timeout=60)
    status = client.request("session:carol", s.GetSessionStatus(), timeout=CALL_TIMEOUT)
    assert isinstance(status, s.SessionStatus) and not status.authorized
    error = refused(client, "session:carol", s.GetMe(), errors.Unavailable)
    assert "revoked" in error.message

    # Logging in again (what `run.py login carol` does) recovers with a new key.
    sent = client.request("session:carol", s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent)
    code = sessions.sandbox.control.last_login_code(phone)
    logged = client.request("session:carol", s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn) and logged.user.id == user.id
    me = client.request("session:carol", s.GetMe(), timeout=CALL_TIMEOUT)
    assert isinstance(me, s.Me) and me.user.id == user.id
