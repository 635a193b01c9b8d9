"""Two-step verification through the session actor: code, then the password (SRP)."""

from __future__ import annotations

from protocols import errors
from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT, refused


def test_login_with_code_then_password(sessions: Sessions, broker: Proc, client: Client) -> None:
    assert sessions.sandbox is not None
    phone, user = sessions.add_user("dave")
    sessions.sandbox.control.set_password(user.id, "open sesame", hint="the usual")
    sessions.node("n1", "dave")
    sessions.wait_state(client, "dave", "unauthorized")
    address = "session:dave"

    sent = client.request(address, s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent)
    code = sessions.sandbox.control.last_login_code(phone)
    needed = client.request(address, s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert needed == s.PasswordNeeded(hint="the usual")
    refused(client, address, s.GetMe(), errors.Unauthorized)

    wrong = refused(client, address, s.SubmitPassword(password="close sesame"), errors.BadRequest)
    assert wrong.message.startswith("PASSWORD_HASH_INVALID")

    logged = client.request(address, s.SubmitPassword(password="open sesame"), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn) and logged.user.id == user.id
    me = client.request(address, s.GetMe(), timeout=CALL_TIMEOUT)
    assert isinstance(me, s.Me) and me.user.id == user.id
