"""The bot end to end: real ``run.py`` processes, real Telethon against the sandbox.

A sandbox user talks to the bot as a person does (messages, button presses); the bot
(``bot:newsbot``), the parser and the store, and the session actors of the bot and the
reader account run in separate node processes behind one broker. Everything the user
sees is read back from the sandbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actors import actor_kinds
from config import Settings
from runtime.client import Client
from sandbox import SandboxThread
from sandbox.control import Account, Message
from tests.runtime.support import Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import log_in

pytestmark = pytest.mark.skipif(
    "store" not in actor_kinds(Settings()), reason="needs the StoreActor (issue 11)"
)

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

        return wait_until(found, timeout, f"a bot message with {needle!r}")  # type: ignore[return-value]

    def channel(self, prefix: str = "chan") -> str:
        name = f"{prefix}{next(_names)}news"
        self.sandbox.control.create_channel(name.title(), username=name)
        return name


@pytest.fixture
def world(sessions: Sessions, sandbox: SandboxThread) -> Iterator[World]:
    bot = sessions.add_bot("newsbot")
    phone, reader = sessions.add_user("reader")
    control = sandbox.control
    user = control.create_user(f"+1555{next(_names):07d}", "Ann", username=f"ann{next(_names)}x")
    admin = control.create_user(f"+1556{next(_names):07d}", "Adm", username=f"adm{next(_names)}x")
    stranger = control.create_user(
        f"+1557{next(_names):07d}", "Eve", username=f"eve{next(_names)}x"
    )
    sessions.accounts["zz_app"] = "\n".join(
        [
            "[parser]",
            'readers = ["reader"]',
            "[bot]",
            'mode = "allowlist"',
            f"admins = [{admin.id}]",
            f"allowlist = [{user.id}]",
            "add_timeout_s = 60",
            "[bot.delivery]",
            "poll_interval_s = 0.5",
        ]
    )
    sessions.write_config()
    broker = sessions.run_broker()
    procs = {"broker": broker}
    procs["sessions"] = sessions.node("sessions", "newsbot,reader")
    with Client(sessions.broker) as client:
        sessions.wait_state(client, "newsbot", "authorized")
        log_in(sessions, client, "reader", phone)
    procs["app"] = _node(sessions, "app", "store=store:main,parser=parser:main")
    procs["bot"] = _node(sessions, "botnode", "bot=bot:newsbot")
    yield World(
        sessions,
        sandbox,
        Account(bot.id, 0, "", bot.username, None, True),
        user,
        admin,
        stranger,
        reader.id,
        procs,
    )


def _node(sessions: Sessions, node_id: str, actors: str) -> Proc:
    proc = sessions.run(
        "--role", "node", "--node-id", node_id, "--actors", actors, "--accounts", "", name=node_id
    )
    wait_until(
        lambda: proc.has_logged("hosting address") or proc.popen.poll() is not None, 30, node_id
    )
    assert proc.popen.poll() is None, proc.log_text()[-2000:]
    return proc


def test_add_list_deliver_and_remove_across_processes(world: World) -> None:
    control = world.sandbox.control
    first, second = world.channel(), world.channel()
    world.say(f"/add_channel @{first}")
    done = world.wait_reply("Watching")
    assert first in done.text and done.edit_date is not None  # the "adding" message, edited
    world.say(f"/add_channel https://t.me/{second} sport")
    world.wait_reply(f"@{second}")
    world.say("/my_channels")
    listing = world.wait_reply("Your channels (2)")
    assert first in listing.text and second in listing.text

    control.post(first, "hello from the first")
    copy = world.wait_reply("hello from the first")
    assert copy.text.endswith(f"https://t.me/{first}/{control.history(first)[-1].id}")
    control.post(second, "weather only")  # filtered out: no "sport"
    control.post(second, "sport results")
    world.wait_reply("sport results")
    assert not [m for m in world.chat() if "weather only" in m.text]

    remove = next(b for row in listing.buttons for b in row if first.title() in b.text)
    answer = control.press(world.user.id, world.bot.id, listing.id, data=remove.data)
    assert answer.message == "Removed."
    world.say(f"/remove_channel @{second}")
    world.wait_reply("Removed")
    control.post(first, "after removal one")
    control.post(second, "sport after removal")
    world.say("/my_channels")
    world.wait_reply("You follow no channels yet")
    assert not [m for m in world.chat() if "after removal" in m.text]


def test_a_slow_parser_gives_adding_then_the_real_outcome_never_a_timeout(world: World) -> None:
    control = world.sandbox.control
    name = world.channel()
    reader = world.reader_id
    control.flood("contacts.resolveUsername", seconds=4, count=1, user_id=reader)
    control.delay("channels.joinChannel", seconds=3, count=1, user_id=reader)
    world.say(f"/add_channel @{name}")
    world.wait_reply("Adding")
    final = world.wait_reply("Watching", timeout=60)
    assert name in final.text
    world.say(f"/add_channel @{name}")
    world.wait_reply("already watched")
    texts = [m.text for m in world.chat()]
    assert not [t for t in texts if "Timed out" in t or "wrong" in t or "❌" in t]
    assert control.memberships(reader).count(control.channel(name).id) == 1


HOSTILE = [
    ("/add_channel", "Usage: /add_channel"),
    ("/add_channel '; DROP TABLE channels; --", "Usage: /add_channel"),
    ("/add_channel <b>bold</b> \u202e", "Usage: /add_channel"),
    ("/add_channel @nosuchchannel404", "There is no channel"),
    ("/remove_channel", "Usage: /remove_channel"),
    ("/remove_channel @" + "x" * 3000, "Usage: /remove_channel"),
    ("/my_channels please", "no arguments"),
    ("/whatever", "I don't know /whatever"),
]


def test_wrong_missing_and_hostile_arguments_get_a_usage_or_error_reply(world: World) -> None:
    for text, needle in HOSTILE:
        world.say(text)
        reply = world.wait_reply(needle)
        assert "\u202e" not in reply.text
    world.say("/my_channels")
    world.wait_reply("You follow no channels yet")  # nothing was stored


def test_access_control_allowlist_and_admin_only_status(world: World) -> None:
    world.say("/start", world.stranger)
    world.wait_reply("this bot is private", world.stranger)
    world.say("/status", world.user)
    world.wait_reply("Only the bot's admins", world.user)
    world.say("/status", world.admin)
    status = world.wait_reply("readers (1)", world.admin)
    assert "delivery:" in status.text
