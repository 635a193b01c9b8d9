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

from actors import actor_kinds
from config import Settings
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
