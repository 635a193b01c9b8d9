"""Logging an account in: phone code, QR code, bot token, and a StringSession moved between
nodes. Every step goes through the account's session actor, in a node process where the
test is about processes (restarts, moving a session), else hosted in this process; the
login code comes from the sandbox, and the phone that accepts a QR login is a Telethon
client.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

from telethon.tl import functions

from protocols import errors
from protocols import session as s
from runtime.client import Client
from sandbox import SandboxThread
from tests.runtime.support import Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT, Hosted, Phones, log_in, refused
from tests.tools import token_of


def _mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private_session_file(sessions: Sessions, account: str) -> None:
    """The account's session file (and its lock file) are 0600, in a 0700 directory."""
    session_file = sessions.data_dir / "sessions" / f"{account}.session"
    assert _mode(session_file) == 0o600
    assert _mode(session_file.with_name(f"{account}.session.lock")) == 0o600
    assert _mode(session_file.parent) == 0o700


def _me(client: Client, account: str) -> s.User:
    me = client.request(f"session:{account}", s.GetMe(), timeout=CALL_TIMEOUT)
    assert isinstance(me, s.Me)
    return me.user


def test_login_by_phone_code_survives_a_node_restart(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    phone, user = sessions.add_user("alice")
    node = sessions.node("n1", "alice")
    sessions.wait_state(client, "alice", "unauthorized")
    address = "session:alice"

    refused(client, address, s.GetMe(), errors.Unauthorized)
    refused(client, address, s.SubmitCode(code="12345"), errors.BadRequest)  # no StartLogin
    error = refused(client, address, s.StartLogin(phone="no phone"), errors.BadRequest)
    assert error.message.startswith("PHONE_NUMBER_INVALID")
    sent = client.request(address, s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent) and sent.phone == phone
    code = sessions.sandbox.control.last_login_code(phone)
    assert code
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    error = refused(client, address, s.SubmitCode(code=wrong), errors.BadRequest)
    assert error.message.startswith("PHONE_CODE_INVALID")

    logged = client.request(address, s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn)
    assert logged.user.id == user.id and logged.user.phone == phone.lstrip("+")
    assert _me(client, "alice").id == user.id
    status = client.request(address, s.GetSessionStatus(), timeout=CALL_TIMEOUT)
    assert isinstance(status, s.SessionStatus) and status.authorized
    assert status.state == "authorized"
    _assert_private_session_file(sessions, "alice")

    # A new node process on the same session file is logged in without a new code.
    assert node.stop() == 0
    sessions.node("n2", "alice")
    sessions.wait_state(client, "alice", "authorized")
    assert _me(client, "alice").id == user.id
    assert sessions.sandbox.control.last_login_code(phone) is None  # used, none issued since
    _assert_private_session_file(sessions, "alice")

    # Logging out makes the account unauthorized again.
    assert client.request(address, s.LogOut(), timeout=CALL_TIMEOUT) == s.LoggedOut()
    refused(client, address, s.GetMe(), errors.Unauthorized)
    sessions.wait_state(client, "alice", "unauthorized")
    # ... and the same actor can log in again.
    assert log_in(sessions, client, "alice", phone).id == user.id
    assert _me(client, "alice").id == user.id


def test_login_by_qr_code_accepted_on_another_device(
    hosted: Hosted, sandbox: SandboxThread, phones: Phones
) -> None:
    phone, user = hosted.sessions.add_user("bob")
    bob = hosted.start("bob")
    hosted.wait_state("bob", "unauthorized")
    hosted.refused("bob", s.QrLoginStatus(), errors.BadRequest)  # no StartQrLogin yet

    qr = bob.request(s.StartQrLogin(), timeout=CALL_TIMEOUT)
    assert qr.url.startswith("tg://login?token=") and qr.expires_at > time.time()
    assert bob.request(s.QrLoginStatus(), timeout=CALL_TIMEOUT) == s.QrLoginState(state="waiting")

    # Bob's phone, already logged in, scans the code: it accepts the token.
    phone_client = phones.log_in(phone)
    phones.run(phone_client(functions.auth.AcceptLoginTokenRequest(token_of(qr.url))))

    def done() -> s.QrLoginState | None:
        state = bob.request(s.QrLoginStatus(), timeout=CALL_TIMEOUT)
        assert state.state != "expired"
        return state if state.state == "done" else None

    finished = wait_until(done, CALL_TIMEOUT, "the QR login to finish")
    assert isinstance(finished, s.QrLoginState)
    assert finished.user is not None and finished.user.id == user.id
    assert bob.request(s.GetMe(), timeout=CALL_TIMEOUT).user.id == user.id
    hosted.wait_state("bob", "authorized")
    _assert_private_session_file(hosted.sessions, "bob")


def test_bot_logs_in_with_its_token(hosted: Hosted) -> None:
    bot = hosted.sessions.add_bot("robot")
    robot = hosted.start("robot")
    hosted.wait_state("robot", "authorized")
    me = robot.request(s.GetMe(), timeout=CALL_TIMEOUT).user
    assert me.id == bot.id and me.bot and me.username == bot.username
    _assert_private_session_file(hosted.sessions, "robot")
    # Bots have no phone or QR login.
    for body in (s.StartLogin(phone="+10000000000"), s.StartQrLogin()):
        error = hosted.refused("robot", body, errors.BadRequest)
        assert "bot_token" in error.message


def test_bot_with_a_wrong_token_is_reported_not_authorized(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    bot = sessions.sandbox.control.create_bot("wrongtoken_bot")
    sessions.add_account("robot", 'kind = "bot"', f'bot_token = "{bot.id}:not-the-secret"')
    node = sessions.node("n1", "robot")

    def reported() -> s.SessionStatus | None:
        status = client.request("session:robot", s.GetSessionStatus(), timeout=CALL_TIMEOUT)
        assert isinstance(status, s.SessionStatus)
        return status if status.state in ("failed", "unauthorized") else None

    status = wait_until(reported, CALL_TIMEOUT, "the wrong token to be reported")
    assert isinstance(status, s.SessionStatus) and not status.authorized
    refused(client, "session:robot", s.GetMe(), errors.Error)
    assert "not-the-secret" not in node.log_text()  # the token never reaches the log


def test_export_then_import_on_another_node(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    phone, user = sessions.add_user("alice", export_allowed='["client:*"]')
    first = sessions.node("n1", "alice")
    log_in(sessions, client, "alice", phone)
    exported = client.request("session:alice", s.ExportSession(), timeout=CALL_TIMEOUT)
    assert isinstance(exported, s.SessionExport)
    string = exported.session_string
    assert string not in first.log_text()  # exported, never logged
    assert first.stop() == 0

    # The session moves: a new account configured with the string, on another node.
    sessions.add_account("moved", 'kind = "user"', f'session_string = "{string}"')
    second = sessions.node("n2", "moved")
    sessions.wait_state(client, "moved", "authorized")
    assert _me(client, "moved").id == user.id
    history = client.request(
        "session:moved", s.GetDialogs(limit=10), timeout=CALL_TIMEOUT
    )  # a real request beyond GetMe
    assert isinstance(history, s.Dialogs)
    assert not (sessions.data_dir / "sessions" / "moved.session").exists()
    assert string not in second.log_text()
