"""The bot end to end: real ``run.py`` processes, real Telethon against the sandbox.

A sandbox user talks to the bot as a person does (messages, button presses); the bot
(``bot:newsbot``), the parser and the store, and the session actors of the bot and the
reader account run in separate node processes behind one broker. Everything the user
sees is read back from the sandbox.
"""

from __future__ import annotations

import pytest

from actors import actor_kinds
from config import Settings
from sandbox import SandboxThread
from sandbox.control import Account
from tests.bot.support import World, start_world
from tests.session.conftest import Sessions

pytestmark = pytest.mark.skipif(
    "store" not in actor_kinds(Settings()), reason="needs the StoreActor (issue 11)"
)


def allowlist(user: Account, admin: Account) -> list[str]:
    return [
        "[bot]",
        'mode = "allowlist"',
        f"admins = [{admin.id}]",
        f"allowlist = [{user.id}]",
        "add_timeout_s = 60",
        "[bot.delivery]",
        "poll_interval_s = 0.5",
    ]


def watching(name: str) -> str:
    """The start of /add_channel's outcome for the channel ``name`` made by World.channel."""
    return f"Watching {name.title()} (@{name})"


@pytest.fixture
def world(sessions: Sessions, sandbox: SandboxThread) -> World:
    return start_world(sessions, sandbox, allowlist)


def test_add_list_deliver_and_remove_across_processes(world: World) -> None:
    control = world.sandbox.control
    first, second = world.channel(), world.channel()
    world.say(f"/add_channel @{first}")
    done = world.wait_reply(watching(first))
    assert done.edit_date is not None  # the "adding" message, edited
    world.say(f"/add_channel https://t.me/{second} sport")
    # The outcome, not "Adding @second…": /my_channels lists it only once it is subscribed.
    world.wait_reply(watching(second))
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


def test_an_edited_command_replaces_its_answer_and_runs_no_side_effect_twice(world: World) -> None:
    control = world.sandbox.control
    name = world.channel()
    command = world.say(f"/add_channel @{name}")
    world.wait_reply("Watching")
    control.edit_message(world.user.id, command.id, f"/add_channel @{name} sport")
    world.wait_reply("when they mention: sport")
    answers = [m for m in world.chat() if name in m.text]
    assert len(answers) == 1  # the first answer was edited, not a second one sent
    assert control.memberships(world.reader_id).count(control.channel(name).id) == 1
    control.post(name, "weather, no keyword")
    control.post(name, "sport at last")
    world.wait_reply("sport at last")
    assert not [m for m in world.chat() if "weather, no keyword" in m.text]
