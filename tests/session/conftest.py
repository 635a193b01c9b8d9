"""Session actors in real node processes, against a sandbox in this test process.

The sandbox stands in for Telegram and is driven through its control API; everything of
ours runs as the user runs it: ``python run.py`` processes reading ``switchboard.toml``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from protocols import session as s
from runtime.client import Client
from sandbox import SandboxThread
from tests.runtime.support import START_S, Proc, System, wait_until

if TYPE_CHECKING:
    from tests.session.support import Hosted, Phones

_numbers = itertools.count(1)

# Fast watchdog and state saving, so reliability tests take seconds.
SESSION_TIMING = """
[session]
watchdog_interval_s = 1.0
ping_timeout_s = 2.0
reconnect_initial_s = 0.2
reconnect_max_s = 1.0
state_save_interval_s = 0.2
"""


@dataclass
class Sessions(System):
    """A test system whose accounts live in the sandbox; writes ``switchboard.toml``."""

    sandbox: SandboxThread | None = None
    accounts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        assert self.sandbox is not None
        self.key_file = self.tmp / "sandbox.pem"
        self.key_file.write_text(self.sandbox.public_key_pem)
        self.data_dir = self.tmp / "data"

    def add_bot(self, name: str, token: str | None = None, **extra: str) -> s.User:
        """A new sandbox bot configured as account ``name`` (logs in with its token).

        ``token`` replaces the bot's own token (with a wrong one, say). ``extra`` adds TOML
        lines to the account, e.g. ``export_allowed='["client:*"]'``.
        """
        assert self.sandbox is not None
        bot = self.sandbox.control.create_bot(f"{name}{next(_numbers)}_bot")
        token = token or bot.token
        self.add_account(name, 'kind = "bot"', f'bot_token = "{token}"', *_toml(extra))
        return s.User(id=bot.id, username=bot.username or "", bot=True)

    def add_user(self, name: str, **extra: str) -> tuple[str, s.User]:
        """A new sandbox user configured as account ``name`` (not logged in yet)."""
        assert self.sandbox is not None
        phone = f"+1444{next(_numbers):07d}"
        user = self.sandbox.control.create_user(
            phone, name.title(), username=f"{name}{next(_numbers)}"
        )
        self.add_account(name, 'kind = "user"', f'phone = "{phone}"', *_toml(extra))
        return phone, s.User(id=user.id, username=user.username or "", phone=phone)

    def add_account(self, name: str, *lines: str) -> None:
        assert self.sandbox is not None
        self.accounts[name] = "\n".join(
            [
                f"[accounts.{name}]",
                *lines,
                f"[accounts.{name}.server]",
                f'host = "{self.sandbox.host}"',
                f"port = {self.sandbox.port}",
                f'public_key_file = "{self.key_file}"',
            ]
        )
        self.write_config()

    def write_config(self) -> Path:
        path = self.tmp / "switchboard.toml"
        body = [f'data_dir = "{self.data_dir}"', SESSION_TIMING, *self.accounts.values()]
        path.write_text("\n".join(body) + "\n")
        return path

    def node(
        self,
        node_id: str,
        accounts: str,
        *extra: str,
        name: str = "",
        env: dict[str, str] | None = None,
    ) -> Proc:
        """A node process hosting these accounts' session actors (and no echo actor).

        ``name`` names its log (default: the node id), ``env`` adds variables.
        """
        proc = self.run(
            "--role",
            "node",
            "--node-id",
            node_id,
            "--actors",
            "",
            "--accounts",
            accounts,
            *extra,
            name=name or node_id,
            env=env,
        )
        wait_until(
            lambda: (
                proc.has_logged("hosting address")
                or proc.popen.poll() is not None
                or proc.has_logged("address refused")
            ),
            START_S,
            f"node {node_id} to start",
        )
        return proc

    def wait_state(self, client: Client, account: str, state: str, timeout: float = 30) -> None:
        """Wait until the account's session actor reports ``state``."""

        def reached() -> bool:
            status = client.request(f"session:{account}", s.GetSessionStatus(), timeout=5)
            return isinstance(status, s.SessionStatus) and status.state == state

        wait_until(reached, timeout, f"session:{account} to be {state}")


def _toml(extra: dict[str, str]) -> list[str]:
    return [f"{key} = {value}" for key, value in extra.items()]


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    thread = SandboxThread().start()
    yield thread
    thread.stop()


@pytest.fixture
def sessions(tmp_path: Path, sandbox: SandboxThread) -> Iterator[Sessions]:
    system = Sessions(tmp_path, sandbox=sandbox)
    system.write_config()
    yield system
    system.stop_all()


@pytest.fixture
def broker(sessions: Sessions) -> Proc:
    return sessions.run_broker()


@pytest.fixture
def client(sessions: Sessions, broker: Proc) -> Iterator[Client]:
    with sessions.client() as c:
        yield c


@pytest.fixture
def hosted(tmp_path: Path, sandbox: SandboxThread) -> Iterator[Hosted]:
    """Session actors hosted in this process, for a system with no processes at all."""
    from tests.session.support import Hosted  # support builds on this module's Sessions

    hosted = Hosted(Sessions(tmp_path, sandbox=sandbox))
    yield hosted
    hosted.stop_all()


@pytest.fixture
def phones(sandbox: SandboxThread) -> Iterator[Phones]:
    """Telethon clients of sandbox users (the people around an account)."""
    from tests.session.support import Phones  # support builds on this module's Sessions

    phones = Phones(sandbox)
    yield phones
    phones.close()
