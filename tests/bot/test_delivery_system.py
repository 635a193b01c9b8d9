"""Delivery of new posts end to end: exactly once across kill -9, and the bot limits.

Real processes against the sandbox (see ``tests/bot/support.py``). The sandbox enforces
Telegram's bot sending limits (answering FLOOD_WAIT past them) and logs every accepted
send per chat, so the tests read what subscribers really got and at what rate.
"""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest
from telethon import utils
from telethon.tl import types

from actors import actor_kinds
from config import Settings
from protocols import store as st
from sandbox import SandboxThread
from sandbox.control import Account
from tests.bot.support import World, app_node, person, start_world
from tests.runtime.support import wait_until
from tests.session.conftest import Sessions

pytestmark = pytest.mark.skipif(
    "store" not in actor_kinds(Settings()), reason="needs the StoreActor (issue 11)"
)

POST = re.compile(r"\n\nburst (\d+)\n\n")


def subscribe(world: World, people: list[Account], channel: str) -> None:
    """Each person adds the channel through the bot (and so has a chat with it)."""
    for someone in people:
        world.say(f"/add_channel @{channel}", someone)
    for someone in people:
        world.wait_reply("Watching", someone, timeout=60)


def copies(world: World, someone: Account) -> Counter[int]:
    """How many copies of each ``burst <n>`` post ``someone`` got."""
    found = (POST.search(m.text) for m in world.chat(someone))
    return Counter(int(m.group(1)) for m in found if m)


def fast_limits(user: Account, admin: Account) -> list[str]:
    return [
        "[bot.delivery]",
        "overall_per_s = 400",
        "private_per_s = 40",
        "poll_interval_s = 0.5",
    ]


POSTS, SUBSCRIBERS = 500, 20


@pytest.mark.timeout(600)
def test_kill_9_during_a_burst_delivers_every_post_to_every_subscriber_exactly_once(
    sessions: Sessions, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    control.set_limits(bot_per_s=800, bot_burst=800, bot_private_per_s=80, bot_private_burst=80)
    world = start_world(sessions, sandbox, fast_limits, send_per_s=400)
    people = [person(sandbox, f"sub{n}") for n in range(SUBSCRIBERS)]
    channel = world.channel()
    subscribe(world, people, channel)
    control.reset_bot_sends()  # count the copies only

    control.post_many(channel, count=POSTS, text="burst {n}")

    def sent() -> int:
        return sum(c.sent for c in control.bot_sends(world.bot.id))

    wait_until(lambda: sent() > POSTS * SUBSCRIBERS // 5, 120, "a fifth of the burst sent")
    world.procs["bot"].signal(signal.SIGKILL)
    world.procs["bot"].popen.wait()
    half = sent()
    assert half < POSTS * SUBSCRIBERS + 40, "the burst was over before the kill"
    world.procs["bot"] = app_node(sessions, "botnode2", "bot=bot:newsbot", "--standby")

    # The send log is cheap to poll; the chats are read once, at the end.
    wait_until(lambda: sent() >= POSTS * SUBSCRIBERS, 600, "every post sent to every subscriber")
    for someone in people:
        got = copies(world, someone)
        assert set(got) == set(range(POSTS)) and max(got.values()) == 1, someone.username


def test_a_flood_wait_for_one_chat_delays_that_chat_only_and_rates_stay_in_the_limits(
    sessions: Sessions, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    world = start_world(sessions, sandbox, lambda u, a: ["[bot.delivery]", "poll_interval_s = 0.5"])
    people = [person(sandbox, f"sub{n}") for n in range(3)]
    waited = people[1]
    channel = world.channel()
    subscribe(world, people, channel)
    control.reset_bot_sends()

    control.flood_chat(world.bot.id, waited.id, seconds=8)
    control.post_many(channel, count=6, text="burst {n}")
    others = [p for p in people if p is not waited]
    wait_until(lambda: all(len(copies(world, p)) == 6 for p in others), 60, "the others' posts")
    assert len(copies(world, waited)) < 6  # still flood-waited while the others got all
    wait_until(lambda: len(copies(world, waited)) == 6, 60, "the waited chat's posts")
    assert max(copies(world, waited).values()) == 1

    limits = control.set_limits()
    for log in control.bot_sends(world.bot.id):
        if log.chat_id != waited.id:
            assert log.refused == 0, log
        times = log.times
        for i, start in enumerate(times):  # any window of T s: at most burst + rate * T
            for j in range(i, len(times)):
                span = times[j] - start
                assert (
                    j - i + 1 <= limits.bot_private_burst + limits.bot_private_per_s * span + 1e-6
                )


def deleting(user: Account, admin: Account) -> list[str]:
    return ["[bot.delivery]", 'on_deleted = "delete"', "poll_interval_s = 0.5"]


@pytest.mark.timeout(300)
def test_on_deleted_delete_removes_the_copies_of_a_deleted_post_once_and_nothing_else(
    sessions: Sessions, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    world = start_world(sessions, sandbox, deleting)
    gone_before = person(sandbox, "gone")  # deletes its copy itself, before the channel does
    people = [world.user, world.admin, gone_before]
    channel = world.channel()
    subscribe(world, people, channel)
    doomed = control.post(channel, "soon deleted")
    control.post(channel, "stays")
    for someone in people:
        world.wait_reply("stays", someone)
        world.wait_reply("soon deleted", someone)
    own_copy = next(m for m in world.chat(gone_before) if "soon deleted" in m.text)
    assert control.delete_messages(gone_before.id, [own_copy.id], revoke=True) == 1

    def both_sides(someone: Account) -> list[tuple[int, str]]:
        """The whole chat of ``someone`` with the bot, as the sandbox holds it."""
        return [(m.id, m.text) for m in control.chat(someone.id, world.bot.id)]

    def deletes() -> int:
        return control.calls("messages.deleteMessages")["messages.deleteMessages"]

    expected = {p.id: [m for m in both_sides(p) if "soon deleted" not in m[1]] for p in people}
    assert [len(expected[p.id]) < len(both_sides(p)) for p in people] == [True, True, False]
    done_before = deletes()
    assert control.delete_posts(channel, [doomed.id]) == 1
    for someone in people:
        wait_until(
            lambda p=someone: both_sides(p) == expected[p.id], 60, f"{someone.username}'s copy gone"
        )
    # One delete per copy; the copy already gone is no error (recorded deleted below).
    wait_until(lambda: deletes() == done_before + 3, 30, "a delete for each copy")

    # A restart (kill -9) and the deletion stored again: no copy is deleted again.
    world.procs["bot"].signal(signal.SIGKILL)
    world.procs["bot"].popen.wait()
    world.procs["bot"] = app_node(sessions, "botnode2", "bot=bot:newsbot", "--standby")
    channel_id = utils.get_peer_id(types.PeerChannel(doomed.peer_id))
    with sessions.client() as client:
        repeat = client.request(
            "store:main", st.DeletePosts(channel_id=channel_id, message_ids=[doomed.id])
        )
        records = client.request(
            "store:main", st.GetDeliveries(channel_id=channel_id, message_id=doomed.id)
        )
    assert repeat.edited == []
    assert sorted(d.status for d in records.deliveries) == ["deleted"] * 3
    control.post(channel, "after the restart")
    for someone in people:
        world.wait_reply("after the restart", someone)
        chat = both_sides(someone)
        assert chat[:-1] == expected[someone.id] and "after the restart" in chat[-1][1]
    assert deletes() == done_before + 3
