"""A whole system around the bot, in real processes: the test world of tests/bot.

A sandbox (Telegram), a broker, a node with the session actors of the bot and the reader
account, a node with the store and the parser, and a node with ``bot:newsbot``. People
are sandbox users who message the bot and press its buttons.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sandbox import SandboxThread
from sandbox.control import Account, Message
from tests.runtime.support import START_S, Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import log_in

_names = itertools.count(1)
REPLY_S = 20.0


@dataclass
class World:
    sessions: Sessions
    sandbox: SandboxThread
    bot: Account
    user: Account
    admin: Account
    stranger: Account
    reader_id: int
    procs: dict[str, Proc]

    def say(self, text: str, user: Account | None = None) -> Message:
        return self.sandbox.control.send_message((user or self.user).id, self.bot.id, text)

    def chat(self, user: Account | None = None) -> list[Message]:
        return [
            m for m in self.sandbox.control.chat((user or self.user).id, self.bot.id) if not m.out
        ]

    def wait_reply(
        self, needle: str, user: Account | None = None, timeout: float = REPLY_S
    ) -> Message:
        def found() -> Message | None:
            return next((m for m in self.chat(user) if needle in m.text), None)

        try:
            return wait_until(found, timeout, f"a bot message with {needle!r}")  # type: ignore[return-value]
        except AssertionError as exc:
            # What the bot did say tells a lost command from a wrong or late answer.
            said = [m.text[:120] for m in self.chat(user)][-8:]
            raise AssertionError(f"{exc}; the bot's messages in that chat: {said}") from None

    def channel(self, prefix: str = "chan") -> str:
        name = f"{prefix}{next(_names)}news"
        self.sandbox.control.create_channel(name.title(), username=name)
        return name


def person(sandbox: SandboxThread, name: str) -> Account:
    """A new sandbox user (not logged in anywhere: the test acts for it)."""
    number = next(_names)
    return sandbox.control.create_user(f"+1555{number:07d}", name, username=f"{name}{number}x")


def start_world(
    sessions: Sessions,
    sandbox: SandboxThread,
    bot_settings: Callable[[Account, Account], Iterable[str]] = lambda user, admin: (),
    send_per_s: float = 0.0,
) -> World:
    """Start the system; ``bot_settings(user, admin)`` gives TOML lines appended to its
    config (after ``[parser]``), e.g. a ``[bot]`` section naming them. ``send_per_s``
    raises the bot session's own send limit (30/s, Telegram's) for load tests."""
    limits = {}
    if send_per_s:
        rate = f"{{ rate_per_s = {send_per_s}, burst = {int(send_per_s)} }}"
        limits["limits"] = f"{{ send = {rate} }}"
    bot = sessions.add_bot("newsbot", **limits)
    phone, reader = sessions.add_user("reader")
    user, admin, stranger = (person(sandbox, n) for n in ("ann", "adm", "eve"))
    sessions.accounts["zz_app"] = "\n".join(
        ["[parser]", 'readers = ["reader"]', *bot_settings(user, admin)]
    )
    sessions.write_config()
    broker = sessions.run_broker()
    procs = {"broker": broker}
    procs["sessions"] = sessions.node("sessions", "newsbot,reader")
    with sessions.client() as client:
        sessions.wait_state(client, "newsbot", "authorized")
        log_in(sessions, client, "reader", phone)
    procs["app"] = app_node(sessions, "app", "store=store:main,parser=parser:main")
    procs["bot"] = app_node(sessions, "botnode", "bot=bot:newsbot")
    world = World(
        sessions,
        sandbox,
        Account(bot.id, 0, "", bot.username, None, True),
        user,
        admin,
        stranger,
        reader.id,
        procs,
    )
    wait_listening(world, person(sandbox, "probe"))
    return world


def wait_listening(world: World, probe: Account, timeout: float = 30.0) -> None:
    """Wait until the bot answers ``probe``'s /start, asking again every second.

    "hosting address" only says the bot actor started: its bus subscription still has to
    travel to the broker and on to the session node's publisher, and a command published
    before that is lost (the bus is at most once), so a test's first command could go
    unanswered. Any answer (a refusal too) shows that commands now reach the bot.
    """
    give_up = time.monotonic() + timeout
    while not world.chat(probe):
        if time.monotonic() > give_up:
            raise AssertionError(f"the bot answered no /start within {timeout}s")
        world.say("/start", probe)
        asked = time.monotonic()
        while not world.chat(probe) and time.monotonic() - asked < 1.0:
            time.sleep(0.05)


def app_node(sessions: Sessions, node_id: str, actors: str, *extra: str) -> Proc:
    """A node hosting ``actors`` (no session actors), started and serving."""
    proc = sessions.run(
        "--role",
        "node",
        "--node-id",
        node_id,
        "--actors",
        actors,
        "--accounts",
        "",
        *extra,
        name=node_id,
    )
    wait_until(
        lambda: proc.has_logged("hosting address") or proc.popen.poll() is not None,
        START_S,
        node_id,
    )
    assert proc.popen.poll() is None, proc.log_text()[-2000:]
    return proc
