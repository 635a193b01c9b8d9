"""Bad input to ``store:main``: every request type with malformed, oversized and hostile
values gets a typed error, and the database is exactly as it was (compared row by row).

One StoreActor (ActorHarness, real mailbox, real SQLite file) serves the whole table;
its database is seeded by ``seed``: channels ``CHANNEL`` and ``OTHER``, posts 1-3 of
``CHANNEL``, a subscription, the cursor ``consumer`` at 2 and a delivery of post 1.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.storage import Invalid, Store
from actors.store import READS, WRITES, StoreActor
from protocols import errors
from protocols import store as p
from protocols.base import Message
from runtime.testing import ActorHarness
from tests.store.support import CHANNEL, dump, post, seed

UNKNOWN = -100555
HUGE = 2**63  # one past SQLite's integer range
BAD = errors.BadRequest
MISSING = errors.NotFound


def _channel(**fields: object) -> p.SaveChannel:
    return p.SaveChannel(channel=p.Channel(**{"id": CHANNEL, **fields}))  # type: ignore[arg-type]


def _put(*posts: p.PostData, channel: int = CHANNEL) -> p.PutPosts:
    return p.PutPosts(channel_id=channel, posts=list(posts))


def _delivery(**fields: object) -> p.RecordDelivery:
    key = {"subscriber": "bot:b:9", "channel_id": CHANNEL, "message_id": 2}
    return p.RecordDelivery(delivery=p.Delivery(**{**key, **fields}))  # type: ignore[arg-type]


CASES: list[tuple[str, Message, type[errors.Error]]] = [
    ("channel id 0", _channel(id=0), BAD),
    ("channel id past int64", _channel(id=HUGE), BAD),
    ("channel id not an int", _channel(id="-100"), BAD),
    ("username with spaces", _channel(username="drop table"), BAD),
    ("username too long", _channel(username="a" * 65), BAD),
    ("title too long", _channel(title="t" * 300), BAD),
    ("saved as removed", _channel(state="removed"), BAD),
    ("unknown state", _channel(state="sleeping"), BAD),
    ("reader with NUL", _channel(reader="r\x00"), BAD),
    ("negative added_at", _channel(added_at=-1), BAD),
    ("by too long", p.SaveChannel(channel=p.Channel(id=CHANNEL), by="b" * 201), BAD),
    ("delete channel 0", p.DeleteChannel(channel_id=0), BAD),
    ("get channel by nothing", p.GetChannel(), BAD),
    ("get unknown channel", p.GetChannel(channel_id=UNKNOWN), MISSING),
    ("get unknown username", p.GetChannel(username="nobody_here"), MISSING),
    ("get username injection", p.GetChannel(username="x' OR '1'='1"), BAD),
    ("list by unknown state", p.ListChannels(state="nope"), BAD),
    ("list by reader newline", p.ListChannels(reader="a\nb"), BAD),
    ("list channels limit 0", p.ListChannels(limit=0), BAD),
    ("list channels after past int64", p.ListChannels(after_id=HUGE), BAD),
    ("check unknown channel", p.RecordCheck(channel_id=UNKNOWN), MISSING),
    ("check negative newest", p.RecordCheck(channel_id=CHANNEL, newest_id=-1), BAD),
    ("check negative time", p.RecordCheck(channel_id=CHANNEL, checked_at=-5), BAD),
    ("subscribe nobody", p.Subscribe(subscriber="", channel_id=CHANNEL), BAD),
    ("subscribe unknown", p.Subscribe(subscriber="s", channel_id=UNKNOWN), MISSING),
    (
        "51 keywords",
        p.Subscribe(subscriber="s", channel_id=CHANNEL, keywords=[f"k{i}" for i in range(51)]),
        BAD,
    ),
    ("empty keyword", p.Subscribe(subscriber="s", channel_id=CHANNEL, keywords=["a", " "]), BAD),
    ("long keyword", p.Subscribe(subscriber="s", channel_id=CHANNEL, keywords=["k" * 101]), BAD),
    ("unsubscribe nobody", p.Unsubscribe(subscriber="", channel_id=CHANNEL), BAD),
    ("unsubscribe channel 0", p.Unsubscribe(subscriber="s", channel_id=0), BAD),
    ("list subscriptions long name", p.ListSubscriptions(subscriber="s" * 201), BAD),
    ("list subscriptions limit huge", p.ListSubscriptions(limit=p.MAX_PAGE + 1), BAD),
    ("put to unknown channel", _put(post(9), channel=UNKNOWN), MISSING),
    ("message id 0", _put(post(0)), BAD),
    ("negative message id", _put(post(-5)), BAD),
    ("message id past int64", _put(post(HUGE)), BAD),
    ("negative date", _put(p.PostData(message_id=9, date=-1, text="x")), BAD),
    ("negative views", _put(post(9, views=-1)), BAD),
    ("text too long", _put(post(9, "x" * (p.MAX_TEXT + 1))), BAD),
    ("neither text nor media", _put(p.PostData(message_id=9, date=1)), BAD),
    ("media not a word", _put(post(9, media="Photo; DROP")), BAD),
    ("one bad post among good ones", _put(post(9), post(10), post(-1)), BAD),
    ("too many posts", _put(*[post(i) for i in range(1, p.MAX_BATCH + 2)]), BAD),
    ("delete from unknown", p.DeletePosts(channel_id=UNKNOWN, message_ids=[1]), MISSING),
    ("delete negative id", p.DeletePosts(channel_id=CHANNEL, message_ids=[1, -1]), BAD),
    (
        "delete too many",
        p.DeletePosts(channel_id=CHANNEL, message_ids=list(range(1, p.MAX_BATCH + 2))),
        BAD,
    ),
    ("page of unknown channel", p.GetPosts(channel_id=UNKNOWN), MISSING),
    ("limit 0", p.GetPosts(channel_id=CHANNEL, limit=0), BAD),
    ("limit negative", p.GetPosts(channel_id=CHANNEL, limit=-1), BAD),
    ("limit huge", p.GetPosts(channel_id=CHANNEL, limit=p.MAX_PAGE + 1), BAD),
    ("before negative", p.GetPosts(channel_id=CHANNEL, before_id=-1), BAD),
    ("empty query", p.SearchPosts(query=""), BAD),
    ("blank query", p.SearchPosts(query="   "), BAD),
    ("query too long", p.SearchPosts(query="a" * 1001), BAD),
    ("unbalanced quote", p.SearchPosts(query='"open'), BAD),
    ("dangling AND", p.SearchPosts(query="foo AND"), BAD),
    ("unknown column", p.SearchPosts(query="secret:foo"), BAD),
    ("bare NEAR", p.SearchPosts(query="NEAR("), BAD),
    ("SQL injection", p.SearchPosts(query="'; DROP TABLE posts; --"), BAD),
    ("bare star", p.SearchPosts(query="*"), BAD),
    ("search limit 0", p.SearchPosts(query="post", limit=0), BAD),
    ("search unknown channel", p.SearchPosts(query="post", channel_id=UNKNOWN), MISSING),
    ("since negative", p.PostsSince(after_seq=-1), BAD),
    ("since limit 0", p.PostsSince(limit=0), BAD),
    ("since limit huge", p.PostsSince(limit=10**9), BAD),
    ("since channel 0", p.PostsSince(channel_ids=[0]), BAD),
    ("since too many channels", p.PostsSince(channel_ids=list(range(1, 1002))), BAD),
    ("cursor without name", p.GetCursor(name=""), BAD),
    ("save cursor without name", p.SaveCursor(name="", seq=1), BAD),
    ("save cursor negative", p.SaveCursor(name="c", seq=-1), BAD),
    ("save cursor past the end", p.SaveCursor(name="c", seq=4), BAD),
    ("delivery of unknown post", _delivery(message_id=99), MISSING),
    ("delivery of unknown channel", _delivery(channel_id=UNKNOWN), MISSING),
    ("delivery unknown status", _delivery(status="lost"), BAD),
    ("delivery nobody", _delivery(subscriber=""), BAD),
    ("delivery message id 0", _delivery(message_id=0), BAD),
    ("delivery negative sent id", _delivery(sent_message_id=-1), BAD),
    ("deliveries unknown status", p.GetDeliveries(status="lost"), BAD),
    ("deliveries limit 0", p.GetDeliveries(limit=0), BAD),
    ("deliveries negative seq", p.GetDeliveries(after_seq=-1), BAD),
    ("stats limit negative", p.GetStoreStats(limit=-1), BAD),
]


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad_input") / "store.sqlite3"
    seeded = Store(path)
    seed(seeded)
    seeded.close()
    return path


@pytest.fixture(scope="module")
def harness(path: Path) -> Iterator[ActorHarness]:
    with ActorHarness(functools.partial(StoreActor, path=path), address="store:main") as h:
        yield h


@pytest.mark.parametrize(("case", "body", "error"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_answered_with_a_typed_error_and_changes_nothing(
    harness: ActorHarness, path: Path, case: str, body: Message, error: type[errors.Error]
) -> None:
    before = dump(path)
    reply = harness.ask(body)
    assert type(reply) is error, f"{case}: {reply!r:.300}"
    assert reply.message
    assert dump(path) == before
    assert harness.mailbox.supervision.restarts == 0  # refused, not crashed


@pytest.mark.parametrize(
    "body", [_channel(title="bad \ud800 surrogate"), _put(post(9, "\udfff"))], ids=["title", "text"]
)
def test_text_that_is_not_unicode_is_refused_in_process(body: Message) -> None:
    """Lone surrogates cannot cross the wire (msgspec refuses to encode them); a program
    using the Store in process gets Invalid, not a crash inside SQLite."""
    store = Store(":memory:")
    seed(store)
    method = WRITES[type(body)]
    with pytest.raises(Invalid, match="not valid Unicode"):
        method(store, body)
    store.close()


def test_the_table_covers_every_request_type() -> None:
    covered = {type(body) for _, body, _ in CASES}
    assert set(WRITES) | set(READS) <= covered
