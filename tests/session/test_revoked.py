"""A session whose auth key the server no longer knows (revoked): never a silent loop."""

from __future__ import annotations

from protocols import errors
from protocols import session as s
from sandbox import SandboxThread
from tests.session.support import CALL_TIMEOUT, Hosted


def test_bot_starts_a_new_key_and_logs_in_again(hosted: Hosted, sandbox: SandboxThread) -> None:
    bot = hosted.sessions.add_bot("alice")
    alice = hosted.start("alice")
    hosted.wait_state("alice", "authorized")

    sandbox.control.forget_auth_keys(bot.id)
    hosted.wait_state("alice", "connecting", timeout=60)
    hosted.wait_state("alice", "authorized", timeout=60)
    assert alice.request(s.GetMe(), timeout=CALL_TIMEOUT).user.id == bot.id


def test_user_is_failed_until_logged_in_again(hosted: Hosted, sandbox: SandboxThread) -> None:
    phone, user = hosted.sessions.add_user("carol")
    carol = hosted.start("carol")
    hosted.log_in("carol", phone)

    sandbox.control.forget_auth_keys(user.id)
    hosted.wait_state("carol", "failed", timeout=60)
    status = carol.request(s.GetSessionStatus(), timeout=CALL_TIMEOUT)
    assert not status.authorized
    error = hosted.refused("carol", s.GetMe(), errors.Unavailable)
    assert "revoked" in error.message

    # Logging in again (what `run.py login carol` does) recovers with a new key.
    sent = carol.request(s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent)
    code = sandbox.control.last_login_code(phone) or ""
    logged = carol.request(s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn) and logged.user.id == user.id
    assert carol.request(s.GetMe(), timeout=CALL_TIMEOUT).user.id == user.id
