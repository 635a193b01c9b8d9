"""The demo world that ``python run.py`` runs against when no account is configured.

A sandbox kept in ``<data_dir>/sandbox`` (so logins survive restarts) holding a demo bot,
a demo user and a public channel with a few posts. The returned account settings point
both session actors at that sandbox, exactly as a user would point an account at any
custom server; :func:`log_in_demo_user` then logs the user in through its session actor,
reading the login code from the sandbox as a person would read it from the app.
"""

from __future__ import annotations

import time
from pathlib import Path

from config import AccountSettings, Secret, ServerSettings
from protocols import session as s
from runtime.client import Client
from sandbox import SandboxThread
from sandbox.backend import RpcError

DEMO_BOT_ACCOUNT = "demo"
DEMO_USER_ACCOUNT = "reader"
DEMO_BOT = "switchboard_demo_bot"
DEMO_USER = "switchboard_reader"
DEMO_PHONE = "+15550000000"
DEMO_CHANNEL = "switchboard_news"
_FIRST_POSTS = (
    "Welcome to Switchboard: one owner per Telegram account.",
    "Every request to an account goes through its session actor.",
    "Try: python run.py call session:reader "
    '\'{"type": "FetchHistory", "peer": "switchboard_news", "limit": 5}\'',
)


def start_demo(data_dir: str | Path) -> tuple[SandboxThread, dict[str, AccountSettings]]:
    """Start the demo sandbox and return it with the accounts to run against it."""
    sandbox = SandboxThread(Path(data_dir) / "sandbox").start()
    control = sandbox.control
    try:
        bot = control.account(DEMO_BOT)
        token = control.bot_token(bot.id)
    except RpcError:
        bot = control.create_bot(DEMO_BOT, "Switchboard demo")
        assert bot.token is not None
        token = bot.token
    try:
        user = control.account(DEMO_USER)
    except RpcError:
        user = control.create_user(DEMO_PHONE, "Demo", "Reader", DEMO_USER)
    try:
        control.channel(DEMO_CHANNEL)
    except RpcError:
        channel = control.create_channel("Switchboard news", DEMO_CHANNEL)
        control.add_member(channel.id, bot.id, admin=True)
        control.add_member(channel.id, user.id)
        for text in _FIRST_POSTS:
            control.post(DEMO_CHANNEL, text)
    server = ServerSettings(
        host=sandbox.host,
        port=sandbox.port,
        public_key_file=str(sandbox.public_key_path) if sandbox.public_key_path else None,
    )
    accounts = {
        DEMO_BOT_ACCOUNT: AccountSettings(kind="bot", bot_token=Secret(token), server=server),
        DEMO_USER_ACCOUNT: AccountSettings(kind="user", phone=DEMO_PHONE, server=server),
    }
    return sandbox, accounts


def log_in_demo_user(client: Client, sandbox: SandboxThread, timeout: float = 30.0) -> s.User:
    """Log the demo user in through ``session:reader`` unless it already is.

    Raises TimeoutError if the session actor does not connect in time, and
    runtime.errors.RequestError if a login step is refused.
    """
    address = f"session:{DEMO_USER_ACCOUNT}"
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        status = client.request(address, s.GetSessionStatus(), timeout=10)
        assert isinstance(status, s.SessionStatus)
        if status.authorized and status.user is not None:
            return status.user
        if status.state == "unauthorized":
            client.request(address, s.StartLogin(phone=DEMO_PHONE), timeout=10)
            code = sandbox.control.last_login_code(DEMO_PHONE)
            logged = client.request(address, s.SubmitCode(code=code), timeout=10)
            assert isinstance(logged, s.LoggedIn)
            return logged.user
        time.sleep(0.2)
    raise TimeoutError(f"{address} did not connect within {timeout:g}s")
