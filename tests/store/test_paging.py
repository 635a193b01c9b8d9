"""Paged lists: ``ListChannels``, ``ListSubscriptions`` and ``GetStoreStats`` come in pages
that always fit in a frame, and walking them reads every row exactly once.

The big world (one per module, a real SQLite file): ``CHANNELS`` channels with long titles
and links, so that one reply holding all of them would not fit in a frame, read by the
Store directly, by a StoreActor in process (ActorHarness) and by a ``run.py`` node over
real ZeroMQ. The small world (``mixed``, per test): channels of several readers and
states and subscriptions of several subscribers, to walk with each filter.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from actors.storage import Store
from actors.store import StoreActor
from actors.store_lists import all_channels, all_subscriptions, pages, sync_pages
from protocols import errors
from protocols import store as p
from protocols.base import Message
from protocols.codec import DEFAULT_MAX_FRAME_BYTES, open_body, pack_body
from runtime.testing import ActorHarness
from tests.runtime.support import System
from tests.store.test_processes import STORE, start_store

CHANNELS = 5000
FIRST = -1_000_000_000_000  # channel ids FIRST, FIRST + 1, ...


def _big_channel(n: int) -> p.Channel:
    return p.Channel(
        id=FIRST + n,
        username=f"channel_{n}",
        title=f"{n:05d} " + "a long channel title " * 11,
        invite_link=f"https://t.me/+{n:05d}" + "x" * 180,
        reader=f"reader{n % 3}",
    )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file with ``CHANNELS`` long channels (saved in one transaction)."""
    path = tmp_path_factory.mktemp("paging") / "store.sqlite3"
    store = Store(path)
    store.begin()
    for n in range(CHANNELS):
        store.save_channel(p.SaveChannel(channel=_big_channel(n), by="test"))
    store.commit()
    store.close()
    return path


def _fits(page: Message) -> None:
    size = len(pack_body(page))
    assert size <= p.PAGE_BYTES + 16 * 1024 < DEFAULT_MAX_FRAME_BYTES, size


def _check_complete(pages_read: list[p.Channels], ids: list[int]) -> None:
    """Every big channel once, in id order, each page fitting a frame, only the last
    one without ``more``."""
    assert ids == [FIRST + n for n in range(CHANNELS)]
    for page in pages_read:
        _fits(page)
    assert [page.more for page in pages_read] == [True] * (len(pages_read) - 1) + [False]


def test_the_store_lists_thousands_of_channels_in_pages_that_fit(big: Path) -> None:
    store = Store(big)
    read = list(sync_pages(store.list_channels, p.ListChannels(limit=p.MAX_PAGE)))
    store.close()
    everything = [c for page in read for c in page.channels]
    _check_complete(read, [c.id for c in everything])
    assert len(pack_body(p.Channels(channels=everything))) > DEFAULT_MAX_FRAME_BYTES
    # Pages of 1,000 long channels pass PAGE_BYTES: the byte bound cut them shorter.
    assert len(read) > CHANNELS // p.MAX_PAGE
    saved, listed = _big_channel(CHANNELS - 1), everything[-1]
    assert (listed.title, listed.invite_link, listed.reader) == (
        saved.title,
        saved.invite_link,
        saved.reader,
    )


def test_the_store_actor_pages_every_channel_and_the_stats(big: Path) -> None:
    with ActorHarness(functools.partial(StoreActor, path=big), address=STORE) as harness:
        read = list(sync_pages(harness.request, p.ListChannels()))
        stats = list(sync_pages(harness.request, p.GetStoreStats(limit=p.MAX_PAGE)))
    _check_complete(read, [c.id for page in read for c in page.channels])
    assert len(read) == CHANNELS // p.LIST_PAGE  # the default page size
    per_channel = [s.channel_id for page in stats for s in page.per_channel]
    assert per_channel == [FIRST + n for n in range(CHANNELS)]
    assert [page.more for page in stats] == [True] * (len(stats) - 1) + [False]
    assert all(page.channels == CHANNELS for page in stats)


def test_a_store_process_serves_every_page_over_zeromq(big: Path, tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        (tmp_path / "data").mkdir(parents=True, exist_ok=True)
        shutil.copy(big, tmp_path / "data" / "store.sqlite3")
        system.run_broker()
        start_store(system, "n1")
        with system.client() as client:
            ask = functools.partial(client.request, STORE, timeout=10)
            read = list(sync_pages(ask, p.ListChannels(limit=p.MAX_PAGE)))
    finally:
        system.stop_all()
    _check_complete(read, [c.id for page in read for c in page.channels])


async def test_the_async_walkers_collect_every_row(big: Path) -> None:
    store = Store(big)

    async def ask(body: p.ListChannels | p.ListSubscriptions) -> Message:
        return (
            store.list_channels(body)
            if isinstance(body, p.ListChannels)
            else (store.list_subscriptions(body))
        )

    channels = await all_channels(ask)
    by_reader = [page async for page in pages(ask, p.ListChannels(reader="reader1", limit=100))]
    assert await all_subscriptions(ask) == []
    store.close()
    assert [c.id for c in channels] == [FIRST + n for n in range(CHANNELS)]
    ids = [c.id for page in by_reader for c in page.channels]
    assert ids == [FIRST + n for n in range(CHANNELS) if n % 3 == 1]


# -- filters with paging --------------------------------------------------------------------


READERS = ("alice", "bob", "carol")
SUBSCRIBERS = ("bot:b:1", "bot:b:2", "bot:c:7")


@pytest.fixture
def mixed(store: Store) -> Store:
    """60 channels (-1060 ... -1001): reader by id mod 3, every 4th paused, every 5th
    removed; each subscriber follows the live channels whose id its number divides."""
    for n in range(1, 61):
        channel = p.Channel(id=-1000 - n, reader=READERS[n % 3], state=_state(n))
        store.save_channel(p.SaveChannel(channel=channel))
        for k, subscriber in enumerate(SUBSCRIBERS, 1):
            if n % k == 0 and n % 5:
                store.subscribe(p.Subscribe(subscriber=subscriber, channel_id=-1000 - n))
    for n in range(5, 61, 5):
        store.delete_channel(p.DeleteChannel(channel_id=-1000 - n))
    return store


def _state(n: int) -> p.ChannelState:
    return "paused" if n % 4 == 0 else "active"


def _kept(n: int) -> bool:
    return n % 5 != 0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, lambda n: _kept(n)),
        ({"reader": "bob"}, lambda n: _kept(n) and READERS[n % 3] == "bob"),
        ({"state": "paused"}, lambda n: _kept(n) and _state(n) == "paused"),
        ({"state": "removed"}, lambda n: not _kept(n)),
        ({"reader": "carol", "state": "active"}, lambda n: _kept(n) and n % 3 == 2 and n % 4),
    ],
    ids=["all", "reader", "state", "removed", "reader and state"],
)
def test_channel_filters_combine_with_paging(mixed: Store, query: dict, expected: object) -> None:
    want = sorted(-1000 - n for n in range(1, 61) if expected(n))  # type: ignore[operator]
    for limit in (1, 4, p.MAX_PAGE):
        read = list(sync_pages(mixed.list_channels, p.ListChannels(limit=limit, **query)))
        assert [c.id for page in read for c in page.channels] == want, limit
        assert all(len(page.channels) <= limit for page in read)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"subscriber": "bot:b:2"},
        {"channel_id": -1012},
        {"subscriber": "bot:c:7", "channel_id": -1021},
        {"subscriber": "nobody"},
    ],
    ids=["all", "subscriber", "channel", "both", "none"],
)
def test_subscription_filters_combine_with_paging(mixed: Store, query: dict) -> None:
    want = [
        (s, -1000 - n)
        for s in SUBSCRIBERS
        for n in range(60, 0, -1)
        if n % (SUBSCRIBERS.index(s) + 1) == 0 and n % 5
        if query.get("subscriber", s) == s and query.get("channel_id", -1000 - n) == -1000 - n
    ]
    for limit in (1, 3, p.MAX_PAGE):
        read = list(sync_pages(mixed.list_subscriptions, p.ListSubscriptions(limit=limit, **query)))
        assert [(x.subscriber, x.channel_id) for pg in read for x in pg.subscriptions] == want
        assert all(len(page.subscriptions) <= limit for page in read)


def test_a_subscribers_next_page_needs_only_the_last_channel_id(mixed: Store) -> None:
    """As the HTTP API asks: the subscriber fixed, the cursor its last channel id."""
    mine = p.ListSubscriptions(subscriber="bot:b:2")
    first = mixed.list_subscriptions(replace(mine, limit=4))
    after = first.subscriptions[-1].channel_id
    rest = mixed.list_subscriptions(replace(mine, after_channel_id=after))
    everything = mixed.list_subscriptions(mine).subscriptions
    assert first.more and not rest.more
    assert first.subscriptions + rest.subscriptions == everything
    assert len(everything) == len({x.channel_id for x in everything}) > 4


def test_a_page_of_subscriptions_with_many_keywords_stops_at_page_bytes(store: Store) -> None:
    keywords = [f"{k:02d}" + "k" * 98 for k in range(50)]
    store.save_channel(p.SaveChannel(channel=p.Channel(id=-1001)))
    store.begin()
    for n in range(300):
        store.subscribe(p.Subscribe(subscriber=f"s{n:03d}", channel_id=-1001, keywords=keywords))
    store.commit()
    read = list(sync_pages(store.list_subscriptions, p.ListSubscriptions(limit=p.MAX_PAGE)))
    assert [x.subscriber for page in read for x in page.subscriptions] == [
        f"s{n:03d}" for n in range(300)
    ]
    assert len(read) > 1 and all(page.subscriptions for page in read)
    for page in read:
        _fits(page)


# -- old peers -------------------------------------------------------------------------------


class _OldListChannels(Message, tag="ListChannels"):
    """``ListChannels`` as a peer from before paging declares it."""

    reader: str = ""
    state: str = ""


class _OldChannels(Message, tag="Channels"):
    channels: list[p.Channel] = []


def test_old_peers_and_new_ones_understand_each_other() -> None:
    asked = open_body(pack_body(_OldListChannels(reader="alice")))
    assert asked == p.ListChannels(reader="alice", after_id=0, limit=p.LIST_PAGE)
    page = p.Channels(channels=[p.Channel(id=-1001)], more=True)
    old = msgspec.msgpack.decode(pack_body(page), type=_OldChannels)
    assert old.channels == page.channels


# -- bad paging arguments -------------------------------------------------------------------


BAD_PAGING: list[tuple[Message, str]] = [
    (p.ListChannels(limit=-1), "limit"),
    (p.ListChannels(limit=0), "limit"),
    (p.ListChannels(limit=p.MAX_PAGE + 1), "limit"),
    (p.ListChannels(after_id=2**63), "after_id"),
    (p.ListSubscriptions(limit=-5), "limit"),
    (p.ListSubscriptions(limit=p.MAX_PAGE + 1), "limit"),
    (p.ListSubscriptions(after_channel_id=-(2**63)), "after_channel_id"),
    (p.ListSubscriptions(after_subscriber="a\nb"), "after_subscriber"),
    (p.ListSubscriptions(after_subscriber="s" * 201), "after_subscriber"),
    (p.GetStoreStats(limit=-1), "limit"),
    (p.GetStoreStats(after_id=2**63), "after_id"),
]


@pytest.fixture(scope="module")
def small_actor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActorHarness]:
    path = tmp_path_factory.mktemp("bad_paging") / "store.sqlite3"
    factory = functools.partial(StoreActor, path=path)
    with ActorHarness(factory, address=STORE) as harness:
        yield harness


@pytest.mark.parametrize(
    ("body", "field"),
    BAD_PAGING,
    ids=[f"{type(b).__name__}-{f}-{i}" for i, (b, f) in enumerate(BAD_PAGING)],
)
def test_bad_paging_arguments_get_bad_request_naming_the_field(
    small_actor: ActorHarness, body: Message, field: str
) -> None:
    reply = small_actor.ask(body)
    assert isinstance(reply, errors.BadRequest), reply
    assert reply.message.startswith(f"{field} "), reply.message
