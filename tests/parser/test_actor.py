"""The parser's logic in process: a real mailbox and loop, Telegram and the store as the
small fakes of tests/parser/fakes.py answering the real protocol messages."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actors.parser import Bucket, ParserActor, Quota
from config import ParserSettings
from protocols import errors
from protocols import parser as p
from protocols import session as s
from protocols import store as st
from protocols.events import (
    DeletedPost,
    EditedPost,
    NewPost,
    PostDeleted,
    PostEdited,
    PostStored,
    SessionState,
    post_topic,
    session_topic,
)
from protocols.session import ChatMessage
from runtime.errors import RequestError
from runtime.testing import ActorHarness
from tests.parser.fakes import FakeStore, FakeTelegram

FAST = {"reconcile_min_s": 0.2, "reconcile_s": 0.5, "reconcile_max_s": 2.0, "calls_per_min": 6000}


@dataclass
class Rig:
    harness: ActorHarness
    telegram: FakeTelegram
    store: FakeStore

    def add(self, ref: str, **kwargs: object) -> p.ChannelAdded:
        return self.harness.request(p.AddChannel(ref=ref, **kwargs))  # type: ignore[arg-type]


def rig(readers: list[str], cap: int = 500, store: FakeStore | None = None, **cfg: object) -> Rig:
    telegram = FakeTelegram(readers, cap=cap)
    store = store or FakeStore()
    settings = ParserSettings(readers=readers, backfill=5, **{**FAST, **cfg})  # type: ignore[arg-type]
    harness = ActorHarness(
        functools.partial(ParserActor, settings=settings),
        address="parser:main",
        answers={**telegram.answers(), **store.answers()},
    )
    return Rig(harness, telegram, store)


@pytest.fixture
def two() -> Iterator[Rig]:
    r = rig(["a", "b"])
    with r.harness:
        yield r


def test_add_resolves_joins_saves_and_backfills(two: Rig) -> None:
    chan = two.telegram.channel("news", posts=8)
    added = two.add("@news", by="bot:1")
    assert added.created and added.backfilled == 5
    assert added.channel.id == chan.id and added.channel.reader in ("a", "b")
    assert two.store.stored(chan.id) == [4, 5, 6, 7, 8]
    assert two.store.channels[chan.id].added_by == "bot:1"
    assert [e.post.message_id for e in two.harness.port.events_of(PostStored)] == [4, 5, 6, 7, 8]


def test_adding_again_in_any_spelling_is_one_channel(two: Rig) -> None:
    chan = two.telegram.channel("news", posts=2)
    first = two.add("@news")
    for ref in ("https://t.me/news", "news", str(chan.id)):
        again = two.add(ref)
        assert not again.created and again.channel.id == first.channel.id
    assert sum(two.telegram.count(r, s.ResolvePeer) for r in "ab") == 1
    assert sum(two.telegram.count(r, s.JoinChannel) for r in "ab") == 1


def test_a_second_add_while_the_first_runs_gets_the_same_answer(two: Rig) -> None:
    two.telegram.channel("news", posts=2)
    ids = [two.harness.send(p.AddChannel(ref=ref)) for ref in ("@news", "t.me/news", "@NEWS")]
    replies = [two.harness.reply(i) for i in ids]
    assert all(isinstance(r, p.ChannelAdded) for r in replies)
    assert len({r.channel.id for r in replies}) == 1  # type: ignore[union-attr]
    assert sum(two.telegram.count(r, s.JoinChannel) for r in "ab") == 1


def test_channels_go_to_the_reader_with_fewest(two: Rig) -> None:
    for i in range(6):
        two.telegram.channel(f"chan{i}x", posts=1)
        two.add(f"@chan{i}x")
    assert {r: len(m) for r, m in two.telegram.members.items()} == {"a": 3, "b": 3}


def test_a_full_reader_hands_over_and_none_left_says_so() -> None:
    r = rig(["a", "b"], cap=1)
    with r.harness:
        for name in ("one1", "two2"):
            r.telegram.channel(name)
            r.add(f"@{name}")
        r.telegram.channel("three")
        with pytest.raises(RequestError) as refused:
            r.add("@three")
        error = refused.value.error
        assert isinstance(error, errors.Unavailable) and "CHANNELS_TOO_MUCH" in error.message
        assert all(len(m) == 1 for m in r.telegram.members.values())


def test_join_refused_with_too_much_moves_to_the_other_reader() -> None:
    r = rig(["a", "b"], cap=0)
    with r.harness:
        r.telegram.cap = 500
        r.telegram.fail[("a", s.JoinChannel)] = errors.BadRequest(message="CHANNELS_TOO_MUCH: x")
        r.telegram.channel("news")
        r.telegram.channel("more1")
        assert r.add("@news").channel.reader == "b"
        assert r.add("@more1").channel.reader == "b"  # a is known full now
        assert r.telegram.count("a", s.JoinChannel) == 1


def test_the_resolve_budget_answers_flood_wait_and_asks_telegram_nothing() -> None:
    r = rig(["a"], resolves_per_min=3)
    with r.harness:
        for i in range(5):
            r.telegram.channel(f"chan{i}x")
        for i in range(3):
            r.add(f"@chan{i}x")
        reply = r.harness.ask(p.AddChannel(ref="@chan3x"))
        assert isinstance(reply, errors.FloodWait) and 0 < reply.retry_after <= 60
        assert r.telegram.count("a", s.ResolvePeer) == 3
        assert len(r.store.channels) == 3


@pytest.mark.parametrize(
    ("ref", "kind", "text"),
    [
        ("", errors.BadRequest, "empty"),
        ("https://evil.example/x", errors.BadRequest, "t.me"),
        ("@nosuchchan", errors.NotFound, "USERNAME_NOT_OCCUPIED"),
    ],
)
def test_bad_references_are_typed_errors(two: Rig, ref: str, kind: type, text: str) -> None:
    reply = two.harness.ask(p.AddChannel(ref=ref))
    assert isinstance(reply, kind) and text in reply.message
    assert not two.store.channels


def test_private_channel_is_unauthorized(two: Rig) -> None:
    two.telegram.channel("secret")
    for reader in "ab":
        two.telegram.fail[(reader, s.JoinChannel)] = errors.Unauthorized(
            message="CHANNEL_PRIVATE: it is private"
        )
    reply = two.harness.ask(p.AddChannel(ref="@secret"))
    assert isinstance(reply, errors.Unauthorized) and reply.message.startswith("CHANNEL_PRIVATE")


def test_live_posts_edits_and_deletions_are_stored_then_published(two: Rig) -> None:
    chan = two.telegram.channel("news", posts=1)
    added = two.add("@news")
    account = added.channel.reader
    new = chan.post("fresh")
    two.harness.event(
        post_topic(chan.id), NewPost(account=account, channel_id=chan.id, message=new)
    )
    two.harness.wait_for(
        lambda: [e for e in two.harness.port.events_of(PostStored) if e.post.message_id == 2]
    )
    edited = ChatMessage(
        id=2, chat_id=chan.id, date=new.date, text="fresh!", edit_date=new.date + 5
    )
    two.harness.event(
        post_topic(chan.id), EditedPost(account=account, channel_id=chan.id, message=edited)
    )
    two.harness.wait_for(lambda: two.harness.port.events_of(PostEdited))
    assert two.store.posts[(chan.id, 2)].text == "fresh!"
    two.harness.event(
        post_topic(chan.id), DeletedPost(account=account, channel_id=chan.id, message_ids=[1])
    )
    gone = two.harness.wait_for(lambda: two.harness.port.events_of(PostDeleted))
    assert gone[0].message_ids == [1] and two.store.posts[(chan.id, 1)].deleted
    # A repeat of the live post (two readers, or the bus and a fetch) changes nothing.
    two.harness.event(
        post_topic(chan.id), NewPost(account=account, channel_id=chan.id, message=new)
    )
    two.harness.wait_for(lambda: two.harness.port.asks_of(st.PutPosts)[-1].posts[0].message_id == 2)
    assert len([e for e in two.harness.port.events_of(PostStored) if e.post.message_id == 2]) == 1


def test_posts_of_unwatched_channels_are_ignored(two: Rig) -> None:
    other = two.telegram.channel("other", posts=1)
    two.harness.event(
        post_topic(other.id),
        NewPost(account="a", channel_id=other.id, message=other.messages[0]),
    )
    two.harness.request(p.GetParserStatus())
    assert not two.harness.port.asks_of(st.PutPosts)


def test_the_reconciler_fetches_what_live_updates_never_brought(two: Rig) -> None:
    chan = two.telegram.channel("quiet", posts=3)
    two.add("@quiet")
    for i in range(250):  # more than two pages, none of them pushed live
        chan.post(f"withheld {i}")
    two.harness.wait_for(lambda: two.store.stored(chan.id)[-1] == 253, timeout=10)
    assert two.store.stored(chan.id) == list(range(1, 254))


def test_restart_catches_up_from_the_newest_stored_post() -> None:
    store = FakeStore()
    first = rig(["a"], store=store, reconcile_s=100.0, reconcile_max_s=100.0, reconcile_min_s=50.0)
    with first.harness:
        chan = first.telegram.channel("news", posts=2)
        first.add("@news")
    chan.post("while down")
    chan.post("while down 2")
    again = rig(["a"], store=store, reconcile_s=100.0, reconcile_max_s=100.0, reconcile_min_s=50.0)
    again.telegram.channels = first.telegram.channels
    again.telegram.members = first.telegram.members
    with again.harness:
        again.harness.wait_for(lambda: store.stored(chan.id) == [1, 2, 3, 4])
        fetched = again.harness.port.asks_of(s.FetchHistory)
        assert fetched[0].min_id == 2


def test_a_revoked_reader_hands_its_channels_over(two: Rig) -> None:
    chan = two.telegram.channel("news", posts=1)
    added = two.add("@news")
    old = added.channel.reader
    new = "b" if old == "a" else "a"
    two.harness.event(
        session_topic(old), SessionState(account=old, state="failed", reason="revoked")
    )
    two.harness.wait_for(lambda: two.store.channels[chan.id].reader == new)
    chan.post("after the move")
    two.harness.wait_for(lambda: two.store.stored(chan.id) == [1, 2])
    status = two.harness.request(p.GetParserStatus())
    assert {r.account: r.channels for r in status.readers} == {old: 0, new: 1}


def test_a_reader_back_from_a_disconnect_catches_up_at_once() -> None:
    r = rig(["a"], reconcile_s=100.0, reconcile_max_s=100.0, reconcile_min_s=50.0)
    with r.harness:
        chan = r.telegram.channel("news", posts=1)
        r.add("@news")
        chan.post("missed")
        r.harness.event(session_topic("a"), SessionState(account="a", state="disconnected"))
        r.harness.event(session_topic("a"), SessionState(account="a", state="authorized"))
        r.harness.wait_for(lambda: r.store.stored(chan.id) == [1, 2])


def test_flood_wait_on_history_delays_checks_without_losing_posts() -> None:
    r = rig(["a"])
    with r.harness:
        chan = r.telegram.channel("news", posts=1)
        r.add("@news")
        r.telegram.fail[("a", s.FetchHistory)] = errors.FloodWait(
            retry_after=1.0, method="GetHistoryRequest"
        )
        chan.post("during the wait")
        r.harness.wait_for(
            lambda: "FloodWait" in r.harness.request(p.GetParserStatus()).channels[0].error
        )
        del r.telegram.fail[("a", s.FetchHistory)]
        r.harness.wait_for(lambda: r.store.stored(chan.id) == [1, 2], timeout=10)


def test_remove_stops_watching_and_leaves_when_configured() -> None:
    r = rig(["a"], leave_on_remove=True)
    with r.harness:
        chan = r.telegram.channel("news", posts=1)
        r.add("@news")
        removed = r.harness.request(p.RemoveChannel(ref="@news"))
        assert removed.channel_id == chan.id and removed.left
        assert r.store.channels[chan.id].state == "removed" and not r.telegram.members["a"]
        assert isinstance(r.harness.ask(p.RemoveChannel(ref="@news")), errors.NotFound)


@pytest.mark.parametrize(
    ("uses", "now", "wait"),
    [
        ([], 0.0, 0.0),
        ([0.0, 1.0], 2.0, 0.0),
        ([0.0, 1.0, 2.0], 3.0, 57.0),
        ([0.0, 1.0, 2.0], 61.0, 0.0),
        ([100.0 + i * 61 for i in range(5)], 500.0, 86400.0 + 100.0 - 500.0),
    ],
)
def test_quota_windows(uses: list[float], now: float, wait: float) -> None:
    quota = Quota((60.0, 3), (86400.0, 5))
    for t in uses:
        quota.take(t)
    assert quota.wait(now) == pytest.approx(wait)


def test_a_live_post_past_a_hole_fetches_the_hole() -> None:
    r = rig(["a"], reconcile_s=100.0, reconcile_max_s=100.0, reconcile_min_s=50.0)
    with r.harness:
        chan = r.telegram.channel("news", posts=1)
        r.add("@news")
        for i in range(30):  # dropped by Telegram (channelDifferenceTooLong)
            chan.post(f"lost {i}")
        late = chan.post("after the gap")
        r.harness.event(post_topic(chan.id), NewPost(account="a", channel_id=chan.id, message=late))
        r.harness.wait_for(lambda: r.store.stored(chan.id) == list(range(1, 33)))


def test_the_call_budget_refills_at_its_rate_and_further_pages_are_paid_back() -> None:
    bucket = Bucket(60)  # one a second, burst of 6
    now = bucket.at
    assert [bucket.take(now) for _ in range(7)] == [True] * 6 + [False]
    assert bucket.take(now + 1.0)
    bucket.charge(now + 1.0)
    bucket.charge(now + 1.0)  # two further pages: two seconds owed
    assert not bucket.take(now + 2.5)
    assert bucket.take(now + 4.0)


def test_budgets_used_before_a_restart_still_count() -> None:
    store = FakeStore()
    first = rig(["a"], store=store, resolves_per_min=3)
    with first.harness:
        for i in range(3):
            first.telegram.channel(f"chan{i}x")
            first.add(f"@chan{i}x")
    again = rig(["a"], store=store, resolves_per_min=3)
    again.telegram.channels = first.telegram.channels
    again.telegram.members = first.telegram.members
    with again.harness:
        again.telegram.channel("chan3x")
        reply = again.harness.ask(p.AddChannel(ref="@chan3x"))
        assert isinstance(reply, errors.FloodWait) and reply.retry_after > 0
        assert again.telegram.count("a", s.ResolvePeer) == 0
