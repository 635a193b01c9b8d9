"""Two-step verification through the session actor: code, then the password (SRP)."""

from __future__ import annotations

from protocols import errors
from protocols import session as s
from sandbox import SandboxThread
from tests.session.support import CALL_TIMEOUT, Hosted


def test_login_with_code_then_password(hosted: Hosted, sandbox: SandboxThread) -> None:
    phone, user = hosted.sessions.add_user("dave")
    sandbox.control.set_password(user.id, "open sesame", hint="the usual")
    dave = hosted.start("dave")
    hosted.wait_state("dave", "unauthorized")

    sent = dave.request(s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent)
    code = sandbox.control.last_login_code(phone) or ""
    needed = dave.request(s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert needed == s.PasswordNeeded(hint="the usual")
    hosted.refused("dave", s.GetMe(), errors.Unauthorized)

    wrong = hosted.refused("dave", s.SubmitPassword(password="close sesame"), errors.BadRequest)
    assert wrong.message.startswith("PASSWORD_HASH_INVALID")
    empty = hosted.refused("dave", s.SubmitPassword(password=""), errors.BadRequest)
    assert empty.message.startswith("PASSWORD_EMPTY")

    logged = dave.request(s.SubmitPassword(password="open sesame"), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn) and logged.user.id == user.id
    assert dave.request(s.GetMe(), timeout=CALL_TIMEOUT).user.id == user.id
