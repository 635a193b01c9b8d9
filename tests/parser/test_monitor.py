"""The channel monitor end to end: sandbox, broker, reader sessions, store, parser.

One system for the module (starting and logging in processes is the slow part): two
reader accounts in one node process, the store (a real SQLite file) in another, the
parser in a third. Each test makes its own channels, so the order of tests does not
matter, except that killing processes is done by tests that restart them.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols import errors
from protocols import parser as p
from protocols import store as st
from protocols.base import Message
from protocols.events import PostDeleted, PostEdited, PostStored, stored_topic
from runtime.client import Client, Subscriber
from runtime.errors import RequestError
from sandbox import SandboxThread
from sandbox.control import Channel
from tests.parser.support import (
    FAST_PARSER,
    PARSER,
    STORE,
    TIMEOUT,
    Monitor,
    marked,
    stored_ids,
    stored_posts,
)
from tests.runtime.support import wait_until

_names = itertools.count(1)


@dataclass
class World:
    monitor: Monitor
    sandbox: SandboxThread
    client: Client

    def channel(self, posts: int = 0) -> Channel:
        n = next(_names)
        control = self.sandbox.control
        channel = control.create_channel(f"Monitored {n}", username=f"mon{n}chan")
        if posts:
            control.post_many(channel.id, posts, text="old {n}")
        return channel

    def add(self, channel: Channel, **kwargs: object) -> p.ChannelAdded:
        body = p.AddChannel(ref=f"@{channel.username}", by="test", **kwargs)  # type: ignore[arg-type]
        return self.client.request(PARSER, body, timeout=TIMEOUT)

    def sandbox_ids(self, channel: Channel) -> list[int]:
        return sorted(m.id for m in self.sandbox.control.history(channel.id))

    def wait_all_stored(self, channels: list[Channel], timeout: float = TIMEOUT) -> None:
        """Until the store holds exactly the sandbox's posts of every channel from its
        first stored one (the backfill) on; the assertion names the first that does not."""
        missing: list[str] = []

        def complete() -> bool:
            missing.clear()
            for channel in channels:
                stored = stored_ids(self.client, marked(channel))
                made = [i for i in self.sandbox_ids(channel) if stored and i >= stored[0]]
                if not stored or stored != made:
                    missing.append(f"{channel.username}: stored {stored}, posted {made}")
                    return False
            return True

        try:
            wait_until(complete, timeout, "every post to be stored")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {missing}") from None

    def status(self) -> p.ParserStatus:
        return self.client.request(PARSER, p.GetParserStatus(), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = SandboxThread().start()
    monitor = Monitor(Path(tmp_path_factory.mktemp("monitor")), sandbox=sandbox, parser=FAST_PARSER)
    clients: list[Client] = []

    def client() -> Client:
        clients.append(monitor.client())
        return clients[-1]

    try:
        yield World(monitor, sandbox, monitor.start(["r1", "r2"], client))
    finally:
        for c in clients:
            c.close()
        monitor.stop_all()
        sandbox.stop()


def events(subscriber: Subscriber, until: float = 0.5) -> list[Message]:
    """The events that arrive until ``until`` s pass without one."""
    got: list[Message] = []
    while (item := subscriber.receive(until)) is not None:
        got.append(item[1])
    return got


def test_25_channels_on_2_readers_backfill_live_and_re_add(world: World) -> None:
    channels = [world.channel(posts=5) for _ in range(25)]
    added = [world.add(c) for c in channels]
    assert all(a.created and a.backfilled == 3 for a in added)
    assert {a.channel.reader for a in added} == {"r1", "r2"}
    for channel in channels:
        assert stored_ids(world.client, marked(channel)) == [3, 4, 5]
    with Subscriber(world.monitor.events_out, [stored_topic()]) as bus:
        time.sleep(0.5)  # the subscription reaches the broker
        world.sandbox.control.post_many([c.id for c in channels], 1, text="live {channel}")
        world.wait_all_stored(channels, timeout=15)
        seen = {
            (e.post.channel_id, e.post.message_id) for e in events(bus) if isinstance(e, PostStored)
        }
    assert {(marked(c), 6) for c in channels} <= seen
    before = world.client.request(STORE, st.GetStoreStats(), timeout=TIMEOUT)
    again = [world.add(c) for c in channels]
    assert not any(a.created for a in again)
    assert [a.channel.id for a in again] == [a.channel.id for a in added]
    after = world.client.request(STORE, st.GetStoreStats(), timeout=TIMEOUT)
    assert (after.posts, after.last_seq) == (before.posts, before.last_seq)


def test_edits_and_deletions_reach_the_store_and_the_bus(world: World) -> None:
    channel = world.channel(posts=3)
    world.add(channel)
    cid = marked(channel)
    with Subscriber(world.monitor.events_out, [stored_topic(cid)]) as bus:
        time.sleep(0.5)
        world.sandbox.control.edit_post(channel.id, 3, "edited text")
        world.sandbox.control.delete_posts(channel.id, [2])

        def changed() -> bool:
            posts = {post.message_id: post for post in stored_posts(world.client, cid)}
            return posts[3].text == "edited text" and posts[2].deleted

        wait_until(changed, TIMEOUT, "the edit and the deletion to be stored")
        got = events(bus)
    assert any(isinstance(e, PostEdited) and e.post.message_id == 3 for e in got)
    assert any(isinstance(e, PostDeleted) and e.message_ids == [2] for e in got)


def test_withheld_updates_and_a_too_long_gap_are_reconciled(world: World) -> None:
    control = world.sandbox.control
    quiet, gap = world.channel(posts=2), world.channel(posts=2)
    world.add(quiet)
    world.add(gap)
    control.set_limits(channel_difference_too_long=20)
    try:
        control.withhold_updates(quiet.id)
        control.withhold_updates(gap.id)
        control.post_many([quiet.id], 5, text="never pushed {n}")
        control.post_many([gap.id], 60, text="a gap {n}")  # beyond the 20 of getChannelDifference
        control.withhold_updates(gap.id, on=False)
        control.post(gap.id, "after the gap")  # live again: Telethon sees the gap, too long
        world.wait_all_stored([quiet, gap], timeout=TIMEOUT)
    finally:
        control.clear_faults()
        control.set_limits(channel_difference_too_long=1000)
    assert len(stored_ids(world.client, marked(gap))) == 63


def kill_while_posting(world: World, process: str, restart: Callable[[], object]) -> None:
    """Four channels post 40 each; ``process`` is killed with SIGKILL after a quarter of
    the posts and restarted after most of them: afterwards every post is stored once."""
    channels = [world.channel(posts=1) for _ in range(4)]
    for channel in channels:
        world.add(channel)
    control = world.sandbox.control
    stream = control.start_posting([c.id for c in channels], per_second=40, count=160)
    wait_until(lambda: control.posting_status(stream).posted >= 40, TIMEOUT, "posting to start")
    victim = world.monitor.procs_by_name[process]
    victim.signal(signal.SIGKILL)
    victim.popen.wait(10)
    wait_until(lambda: control.posting_status(stream).posted >= 120, TIMEOUT, "posts meanwhile")
    restart()
    wait_until(lambda: not control.posting_status(stream).running, TIMEOUT, "the stream to end")
    world.wait_all_stored(channels, timeout=60)
    for channel in channels:
        ids = stored_ids(world.client, marked(channel))
        assert len(ids) == len(set(ids)) == 41  # 1 backfilled + 40 posted, each once


def test_kill_9_of_the_parser_while_channels_post(world: World) -> None:
    kill_while_posting(world, "monitor", lambda: world.monitor.start_parser(world.client))


def test_kill_9_of_the_node_hosting_the_readers(world: World) -> None:
    kill_while_posting(world, "readers", world.monitor.restart_readers)


def test_a_long_flood_wait_moves_channels_to_the_other_reader(world: World) -> None:
    control = world.sandbox.control
    channels = [world.channel(posts=1) for _ in range(4)]
    added = [world.add(c) for c in channels]
    victim = added[0].channel.reader
    other = "r2" if victim == "r1" else "r1"
    mine = [c for c, a in zip(channels, added, strict=True) if a.channel.reader == victim]
    control.flood(
        "messages.getHistory",
        seconds=30,
        count=None,
        duration=30,
        user_id=world.monitor.users[victim].id,
    )
    try:
        control.post_many([c.id for c in channels], 3, text="during the flood {n}")

        def moved() -> bool:
            readers = {c.id: c.reader for c in world.status().channels}
            return all(readers[marked(c)] == other for c in mine)

        wait_until(moved, TIMEOUT, f"{victim}'s channels to move to {other}")
        world.wait_all_stored(channels)
    finally:
        control.clear_faults()


# A consumer process as a user writes one: every post it finishes is appended to a file
# (its "processing"), and it deduplicates on seq by the last line it wrote.
CONSUMER = """
import os, sys
from actors.consumer import PostConsumer
from config import load_settings

out = sys.argv[1]
last = 0
if os.path.exists(out):
    text = open(out).read()
    whole = text[: text.rfind("\\n") + 1]  # a line cut by kill -9 was not finished
    open(out, "w").write(whole)
    if whole:
        last = int(whole.splitlines()[-1].split()[0])
with PostConsumer.connect(load_settings(), "test-consumer", poll_s=0.5) as consumer:
    with open(out, "a") as lines:
        for post in consumer.posts():
            if post.seq <= last:
                continue
            lines.write(f"{post.seq} {post.channel_id} {post.message_id}\\n")
            lines.flush()
            os.fsync(lines.fileno())
            last = post.seq
"""


def test_a_consumer_killed_mid_stream_sees_every_post_once(world: World) -> None:
    channels = [world.channel(posts=1) for _ in range(10)]
    for channel in channels:
        world.add(channel)
    out = world.monitor.tmp / "consumed.txt"
    consumer = world.monitor.python(CONSUMER, str(out))
    control = world.sandbox.control
    stream = control.start_posting([c.id for c in channels], per_second=200, count=2000)

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    try:
        wait_until(lambda: control.posting_status(stream).posted >= 600, TIMEOUT, "posting")
        wait_until(lambda: len(lines()) > 100, TIMEOUT, "the consumer to process posts")
        consumer.kill()
        consumer.wait(10)
        consumer = world.monitor.python(CONSUMER, str(out))
        wait_until(lambda: not control.posting_status(stream).running, 60, "the stream to end")
        world.wait_all_stored(channels, timeout=60)
        last = world.client.request(STORE, st.GetStoreStats(), timeout=TIMEOUT).last_seq
        wait_until(lambda: lines() and int(lines()[-1].split()[0]) >= last, 60, "the consumer")
    finally:
        consumer.kill()
        consumer.wait(10)
    seen = [int(line.split()[0]) for line in lines()]
    assert seen == sorted(set(seen)), "a post was processed twice or out of order"
    every = []
    after = 0
    while page := world.client.request(STORE, st.PostsSince(after_seq=after, limit=1000)).posts:
        every.extend(post.seq for post in page)
        after = page[-1].seq  # an empty page is the end, whatever the size of the others
    assert seen == every  # 0 gaps: the consumer saw exactly the store's sequence
    new = {(int(c), int(m)) for _, c, m in (line.split() for line in lines())}
    assert {(marked(c), m) for c in channels for m in range(2, 202)} <= new


@pytest.mark.parametrize(
    "body",
    [
        p.AddChannel(ref=""),
        p.AddChannel(ref="x" * 100_000),
        p.AddChannel(ref="@a'; DROP TABLE channels; --"),
        p.AddChannel(ref="https://evil.example/news"),
        p.AddChannel(ref="t.me/+\u0000\u202e"),
        p.AddChannel(ref="-5"),
        p.AddChannel(ref="@validname", backfill=-7),
        p.AddChannel(ref="@validname", backfill=10**9),
        p.AddChannel(ref="@validname", by="x" * 10_000),
        p.RemoveChannel(ref="\x00"),
        p.RemoveChannel(ref="@validname", by="x" * 10_000),
    ],
)
def test_bad_input_is_a_typed_error_and_changes_nothing(world: World, body: Message) -> None:
    def kept() -> set[tuple[int, str, str]]:  # progress fields move with the reconciler
        channels = world.client.request(STORE, st.ListChannels(), timeout=TIMEOUT).channels
        return {(c.id, c.username, c.state) for c in channels}

    before = kept()
    with pytest.raises(RequestError) as refused:
        world.client.request(PARSER, body, timeout=TIMEOUT)
    assert isinstance(refused.value.error, errors.BadRequest), refused.value.error
    assert kept() == before
    assert world.monitor.procs_by_name["monitor"].popen.poll() is None


def test_unknown_channels_are_not_found(world: World) -> None:
    for body in (p.AddChannel(ref="@nosuchchannel"), p.RemoveChannel(ref="@nosuchchannel")):
        with pytest.raises(RequestError) as refused:
            world.client.request(PARSER, body, timeout=TIMEOUT)
        assert isinstance(refused.value.error, errors.NotFound), refused.value.error
