"""The demo world that ``python run.py`` runs against when no account is configured.

A sandbox kept in ``<data_dir>/sandbox`` (so logins survive restarts), with a demo bot
and a public channel. The returned account settings point the demo bot's session actor at
that sandbox, exactly as a user would point an account at any custom server.
"""

from __future__ import annotations

from pathlib import Path

from config import AccountSettings, Secret, ServerSettings
from sandbox import SandboxThread
from sandbox.backend import RpcError

DEMO_ACCOUNT = "demo"
DEMO_BOT = "switchboard_demo_bot"
DEMO_CHANNEL = "switchboard_news"


def start_demo(data_dir: str | Path) -> tuple[SandboxThread, dict[str, AccountSettings]]:
    """Start the demo sandbox and return it with the accounts to run against it."""
    sandbox = SandboxThread(Path(data_dir) / "sandbox").start()
    control = sandbox.control
    try:
        bot = control.account(DEMO_BOT)
        token = f"{bot.id}:{sandbox.call(lambda: sandbox.sandbox.world.user(bot.id).bot_secret)}"
    except RpcError:
        bot = control.create_bot(DEMO_BOT, "Switchboard demo")
        assert bot.token is not None
        token = bot.token
    try:
        control.channel(DEMO_CHANNEL)
    except RpcError:
        channel = control.create_channel("Switchboard news", DEMO_CHANNEL)
        control.add_member(channel.id, bot.id, admin=True)
    account = AccountSettings(
        kind="bot",
        bot_token=Secret(token),
        server=ServerSettings(
            host=sandbox.host,
            port=sandbox.port,
            public_key_file=str(sandbox.public_key_path) if sandbox.public_key_path else None,
        ),
    )
    return sandbox, {DEMO_ACCOUNT: account}
