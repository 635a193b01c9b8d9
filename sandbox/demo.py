"""The demo world that ``python run.py`` runs against when no account is configured.

A sandbox kept in ``<data_dir>/sandbox`` (so logins and posts survive restarts) holding a
demo bot, two reader accounts, a person who talks to the bot, and a few public channels
with some history. :func:`start_demo` returns it with the account settings that point
the session actors at it, exactly as a user would point an account at any custom
server; :func:`log_in` logs a reader in through its session actor, reading the login
code from the sandbox as a person reads it from the app. What happens in the demo (the
person's commands, the narration) is the application's: see ``actors/demo.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from config import AccountSettings, Secret, ServerSettings, Settings
from protocols import session as s
from runtime.client import Client
from sandbox import SandboxThread
from sandbox.backend import RpcError
from sandbox.control import Account

__all__ = ["DEMO_BOT_ACCOUNT", "DEMO_READERS", "DemoWorld", "demo_settings", "log_in", "start_demo"]

DEMO_BOT_ACCOUNT = "demo"
DEMO_BOT = "switchboard_demo_bot"
# account name -> (phone, username); each reads channels for the parser.
DEMO_READERS = {
    "reader1": ("+15550000001", "switchboard_reader1"),
    "reader2": ("+15550000002", "switchboard_reader2"),
}
DEMO_PERSON = ("+15550000099", "Dana", "dana_demo")
# username -> title; each gets _HISTORY posts before the demo starts (to backfill).
DEMO_CHANNELS = {
    "demo_news": "Demo News",
    "demo_weather": "Demo Weather",
    "demo_markets": "Demo Markets",
}
_HISTORY = 30


@dataclass
class DemoWorld:
    """The running demo sandbox and who is in it."""

    sandbox: SandboxThread
    accounts: dict[str, AccountSettings]  # the session actors' accounts (bot and readers)
    bot: Account
    person: Account  # the demo user: a person using Telegram, driven through the sandbox
    channels: dict[str, str]  # channel username -> title
    fresh: bool  # the world was created by this run (not loaded from an earlier one)

    def stop(self) -> None:
        self.sandbox.stop()


def start_demo(data_dir: str | Path) -> DemoWorld:
    """Start the demo sandbox (created on first use) and return its world."""
    sandbox = SandboxThread(Path(data_dir) / "sandbox").start()
    control = sandbox.control
    fresh = False
    try:
        bot = control.account(DEMO_BOT)
        token = control.bot_token(bot.id)
    except RpcError:
        fresh = True
        bot = control.create_bot(DEMO_BOT, "Switchboard demo")
        assert bot.token is not None
        token = bot.token
    for phone, username in DEMO_READERS.values():
        _user(control, phone, username.title(), username)
    person = _user(control, *DEMO_PERSON)
    for username, title in DEMO_CHANNELS.items():
        try:
            control.channel(username)
        except RpcError:
            control.create_channel(title, username)
            control.post_many(username, _HISTORY, text=f"{title}: earlier post {{n}}")
    server = ServerSettings(
        host=sandbox.host,
        port=sandbox.port,
        public_key_file=str(sandbox.public_key_path) if sandbox.public_key_path else None,
    )
    accounts = {
        DEMO_BOT_ACCOUNT: AccountSettings(kind="bot", bot_token=Secret(token), server=server)
    }
    for name, (phone, _) in DEMO_READERS.items():
        accounts[name] = AccountSettings(kind="user", phone=phone, server=server)
    return DemoWorld(sandbox, accounts, bot, person, dict(DEMO_CHANNELS), fresh)


def demo_settings(settings: Settings, world: DemoWorld) -> Settings:
    """``settings`` with the demo's accounts, its readers as the parser's, and the bot's
    delivery looking at the store every second (the bus wakes it up sooner anyway)."""
    replace = msgspec.structs.replace
    delivery = replace(settings.bot.delivery, poll_interval_s=1.0)
    return replace(
        settings,
        accounts=world.accounts,
        parser=replace(settings.parser, readers=list(DEMO_READERS)),
        bot=replace(settings.bot, delivery=delivery),
    )


def _user(control: Any, phone: str, first_name: str, username: str) -> Account:
    try:
        return control.account(username)  # type: ignore[no-any-return]
    except RpcError:
        return control.create_user(phone, first_name, "", username)  # type: ignore[no-any-return]


def log_in(client: Client, world: DemoWorld, account: str, timeout: float = 30.0) -> s.User:
    """Log a demo reader in through ``session:<account>`` unless it already is.

    Raises TimeoutError if the session actor does not connect in time, and
    runtime.errors.RequestError if a login step is refused.
    """
    phone = DEMO_READERS[account][0]
    address = f"session:{account}"
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        status = client.request(address, s.GetSessionStatus(), timeout=10)
        if status.authorized and status.user is not None:
            return status.user
        if status.state == "unauthorized":
            client.request(address, s.StartLogin(phone=phone), timeout=10)
            code = world.sandbox.control.last_login_code(phone)
            logged = client.request(address, s.SubmitCode(code=code), timeout=10)
            assert isinstance(logged, s.LoggedIn)
            return logged.user
        time.sleep(0.2)
    raise TimeoutError(f"{address} did not connect within {timeout:g}s")
