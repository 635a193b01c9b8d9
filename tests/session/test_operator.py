"""The operator commands: ``run.py login`` (phone code or QR), ``export-session``,
``import-session``."""

from __future__ import annotations

import stat
import subprocess
import sys

from telethon.tl import functions

from protocols import session as s
from tests.runtime.support import REPO, Proc
from tests.session.conftest import Sessions
from tests.session.support import Phones
from tests.tools import terminal_bitmap, token_of, write_png, zbar_decode


def _start(sessions: Sessions, *args: str) -> subprocess.Popen[str]:
    """``run.py ARGS`` started as at a terminal: its stdin, stdout and stderr are text pipes."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=sessions.tmp,
        env=sessions.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _login(sessions: Sessions, account: str, phone: str) -> subprocess.CompletedProcess[str]:
    """``run.py login ACCOUNT`` typed at a terminal: read the prompt, answer with the code."""
    assert sessions.sandbox is not None
    proc = _start(sessions, "login", account)
    assert proc.stdout is not None and proc.stdin is not None
    prompt = ""
    while not prompt.endswith(": "):
        char = proc.stdout.read(1)
        assert char, f"no prompt; stderr: {proc.stderr.read() if proc.stderr else ''}"
        prompt += char
    assert f"login code sent to {phone}" in prompt
    code = sessions.sandbox.control.last_login_code(phone)
    out, err = proc.communicate(f"{code}\n", timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, prompt + out, err)


def test_login_at_the_terminal_then_export_and_import(sessions: Sessions) -> None:
    phone, user = sessions.add_user("alice", export_allowed='["operator:*"]')
    sessions.add_user("bob")

    done = _login(sessions, "alice", phone)
    assert done.returncode == 0, done.stderr
    assert f"logged in as Alice @{user.username} (id {user.id})" in done.stdout

    again = sessions.command("login", "alice")
    assert again.returncode == 0, again.stderr
    assert "alice is logged in as Alice" in again.stdout
    session_file = sessions.data_dir / "sessions" / "alice.session"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600

    exported = sessions.command("export-session", "alice")
    assert exported.returncode == 0, exported.stderr
    string = exported.stdout.strip()
    assert len(string) > 300
    assert string not in exported.stderr  # printed once, on stdout only

    refused = sessions.command("export-session", "bob")
    assert refused.returncode == 1
    assert "may not export bob's session" in refused.stderr

    imported = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "import-session", "bob", "--force"],
        cwd=sessions.tmp,
        env=sessions.env(),
        input=string,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    bob_file = sessions.data_dir / "sessions" / "bob.session"
    assert stat.S_IMODE(bob_file.stat().st_mode) == 0o600

    # Bob's session now carries Alice's authorization.
    broker = sessions.run("--role", "broker", name="broker")
    sessions.node("n1", "bob")
    with sessions.client() as client:
        sessions.wait_state(client, "bob", "authorized")
        me = client.request("session:bob", s.GetMe(), timeout=10)
    assert isinstance(me, s.Me) and me.user.id == user.id
    assert isinstance(broker, Proc)


def test_login_by_scanning_the_qr_code_the_terminal_shows(sessions: Sessions) -> None:
    assert sessions.sandbox is not None
    phone, user = sessions.add_user("dave")
    phones = Phones(sessions.sandbox)
    try:
        # Dave's phone is logged in before the terminal shows a code: a code lives 30 s,
        # and a phone's login (a new auth key) took longer than that on a busy machine.
        phone_client = phones.log_in(phone)
        proc = _start(sessions, "login", "dave", "--qr")
        assert proc.stdout is not None
        code_lines: list[str] = []
        while not (line := proc.stdout.readline()).startswith("Scan with Telegram"):
            assert line, f"no QR code; stderr: {proc.stderr.read() if proc.stderr else ''}"
            code_lines.append(line)

        # Dave's phone scans what the terminal shows and accepts the token it reads.
        shown = write_png(sessions.tmp / "terminal.png", terminal_bitmap("".join(code_lines)))
        (url,) = zbar_decode(shown)
        assert url.decode() in line  # the same URL, printed for those who cannot scan
        phones.run(phone_client(functions.auth.AcceptLoginTokenRequest(token_of(url))))
    finally:
        phones.close()

    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"logged in as Dave @{user.username} (id {user.id})" in out


def test_import_refuses_garbage_and_an_owned_file(sessions: Sessions) -> None:
    sessions.add_user("carol")
    bad = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "import-session", "carol"],
        cwd=sessions.tmp,
        env=sessions.env(),
        input="not a session string",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "does not hold a valid StringSession" in bad.stderr


def test_login_of_a_bot_whose_token_is_refused_says_why(sessions: Sessions) -> None:
    sessions.add_bot("wrongbot", token="4242424242:" + "x" * 35)
    done = sessions.command("login", "wrongbot", timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert line.startswith("error: bot wrongbot did not log in: bot token refused: ")
    assert "accounts.wrongbot.bot_token" in line
    assert "x" * 35 not in done.stderr


def test_qr_login_of_an_account_with_a_password_asks_for_it(sessions: Sessions) -> None:
    assert sessions.sandbox is not None
    phone, user = sessions.add_user("erin")
    phones = Phones(sessions.sandbox)
    try:
        phone_client = phones.log_in(phone)  # the phone logs in before the password exists
        sessions.sandbox.control.set_password(user.id, "s3cret", hint="usual")
        proc = _start(sessions, "login", "erin", "--qr")
        assert proc.stdout is not None
        while not (line := proc.stdout.readline()).startswith("Scan with Telegram"):
            assert line, f"no QR code; stderr: {proc.stderr.read() if proc.stderr else ''}"
        url = line.rsplit(" ", 1)[-1].strip()
        phones.run(phone_client(functions.auth.AcceptLoginTokenRequest(token_of(url))))
    finally:
        phones.close()
    out, err = proc.communicate("s3cret\n", timeout=60)
    assert proc.returncode == 0, err
    assert "2FA password (hint: usual)" in out + err
    assert f"logged in as Erin @{user.username} (id {user.id})" in out
