"""The Store on its own (no actor, no ZeroMQ), on a real SQLite file and in memory.

Each test starts from an empty store whose clock reads 5000; ``seed`` adds two channels,
three posts, a subscription, a cursor and a delivery where a test needs them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from actors.storage import Invalid, Missing, Store, migrations
from protocols import store as p
from protocols.codec import DEFAULT_MAX_FRAME_BYTES, pack_body
from tests.store.support import CHANNEL, OTHER, post, seed


def _seqs(posts: list[p.Post]) -> list[int]:
    return [x.seq for x in posts]


def _put(store: Store, *posts: p.PostData, channel: int = CHANNEL) -> p.PostsPut:
    return store.put_posts(p.PutPosts(channel_id=channel, posts=list(posts)))


# -- opening and migrations ---------------------------------------------------------------


def test_a_new_file_is_in_wal_mode_with_foreign_keys_and_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = [n for (n,) in conn.execute("SELECT name FROM _migrations ORDER BY version")]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    assert version == len(migrations.MIGRATIONS)
    store = Store(path)
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # noqa: SLF001
    store.close()


def test_reopening_applies_nothing_again_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = Store(path)
    seed(first)
    first.close()
    again = Store(path)
    assert again.schema_version == len(migrations.MIGRATIONS)
    assert len(again.posts_since(p.PostsSince()).posts) == 3
    again.close()


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_future', 999, 0)")
    with pytest.raises(migrations.SchemaTooNew, match="m999_future"):
        Store(path)


def test_a_migration_name_is_registered_once() -> None:
    first = migrations.MIGRATIONS[0]
    with pytest.raises(ValueError, match="twice"):
        migrations.migration(first)


# -- channels -----------------------------------------------------------------------------


def test_saving_a_channel_creates_it_once_and_audits_the_add(store: Store) -> None:
    channel = p.Channel(id=CHANNEL, username="@News", title="News", reader="reader1")
    created = store.save_channel(p.SaveChannel(channel=channel, by="bot:admin"))
    again = store.save_channel(p.SaveChannel(channel=channel, by="bot:admin"))
    assert created.created and not again.created
    assert created.channel.username == "News" and created.channel.added_at == 5000
    assert created.channel.added_by == "bot:admin"
    audit = store._conn.execute("SELECT action, by FROM channel_audit").fetchall()  # noqa: SLF001
    assert audit == [("add", "bot:admin")]


def test_saving_ignores_progress_fields_which_the_store_keeps(store: Store) -> None:
    seed(store)
    bogus = p.Channel(id=CHANNEL, username="news", title="renamed", last_message_id=999)
    saved = store.save_channel(p.SaveChannel(channel=bogus)).channel
    assert saved.title == "renamed" and saved.last_message_id == 3


def test_deleting_a_channel_removes_it_and_its_subscriptions_but_keeps_posts(store: Store) -> None:
    seed(store)
    deleted = store.delete_channel(p.DeleteChannel(channel_id=CHANNEL, by="bot:admin"))
    assert deleted.existed
    assert not store.delete_channel(p.DeleteChannel(channel_id=CHANNEL)).existed
    assert [c.id for c in store.list_channels(p.ListChannels()).channels] == [OTHER]
    removed = store.list_channels(p.ListChannels(state="removed")).channels
    assert [c.id for c in removed] == [CHANNEL]
    assert store.list_subscriptions(p.ListSubscriptions()).subscriptions == []
    assert len(store.get_posts(p.GetPosts(channel_id=CHANNEL)).posts) == 3
    with pytest.raises(Missing, match="removed"):
        store.subscribe(p.Subscribe(subscriber="bot:b:1", channel_id=CHANNEL))


def test_adding_a_removed_channel_again_is_a_new_add(store: Store) -> None:
    seed(store)
    store.delete_channel(p.DeleteChannel(channel_id=CHANNEL, by="x"))
    back = store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL), by="y"))
    assert not back.created and back.channel.state == "active" and back.channel.added_by == "y"
    audit = store._conn.execute(  # noqa: SLF001
        "SELECT action, by FROM channel_audit WHERE channel_id = ? ORDER BY id", (CHANNEL,)
    ).fetchall()
    assert audit == [("add", "test"), ("remove", "x"), ("add", "y")]


def test_a_channel_is_found_by_id_or_by_username_in_any_case(store: Store) -> None:
    seed(store)
    assert store.get_channel(p.GetChannel(username="@NEWS")).id == CHANNEL
    assert store.get_channel(p.GetChannel(channel_id=OTHER)).username == "other"
    with pytest.raises(Missing):
        store.get_channel(p.GetChannel(username="nobody"))


def test_channels_list_by_reader_and_state(store: Store) -> None:
    for n, reader in enumerate(["r1", "r2", "r1"], start=1):
        channel = p.Channel(id=-100 - n, reader=reader, state="paused" if n == 3 else "active")
        store.save_channel(p.SaveChannel(channel=channel))
    by_reader = store.list_channels(p.ListChannels(reader="r1")).channels
    assert [c.id for c in by_reader] == [-103, -101]
    paused = store.list_channels(p.ListChannels(state="paused")).channels
    assert [c.id for c in paused] == [-103]


def test_a_check_records_when_and_how_far_behind(store: Store) -> None:
    seed(store)  # newest stored post: 3, dated 1003
    behind = store.record_check(p.RecordCheck(channel_id=CHANNEL, newest_id=5, checked_at=1010))
    assert (behind.last_check_at, behind.lag_s) == (1010, 7.0)
    caught_up = store.record_check(p.RecordCheck(channel_id=CHANNEL, newest_id=3, error="x"))
    assert (caught_up.last_check_at, caught_up.lag_s, caught_up.error) == (5000, 0.0, "x")


# -- subscriptions --------------------------------------------------------------------------


def test_subscribing_twice_updates_keywords_and_keeps_one(store: Store) -> None:
    seed(store)
    again = store.subscribe(
        p.Subscribe(subscriber="bot:b:1", channel_id=CHANNEL, keywords=["Rust", " go ", "Rust"])
    )
    assert not again.created and again.subscription.keywords == ["Rust", "go"]
    subs = store.list_subscriptions(p.ListSubscriptions(channel_id=CHANNEL)).subscriptions
    assert [(s.subscriber, s.keywords) for s in subs] == [("bot:b:1", ["Rust", "go"])]
    assert store.unsubscribe(p.Unsubscribe(subscriber="bot:b:1", channel_id=CHANNEL)).removed
    assert not store.unsubscribe(p.Unsubscribe(subscriber="bot:b:1", channel_id=CHANNEL)).removed


# -- posts ------------------------------------------------------------------------------------


def test_putting_posts_assigns_increasing_seqs_and_moves_progress(store: Store) -> None:
    store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
    put = _put(store, post(10), post(11))
    assert (put.inserted, put.updated, put.last_seq, put.last_message_id) == (2, 0, 2, 11)
    assert _seqs(put.stored) == [1, 2]
    channel = store.get_channel(p.GetChannel(channel_id=CHANNEL))
    assert (channel.last_message_id, channel.last_post_at) == (11, 1011)


def test_putting_the_same_post_again_changes_nothing(store: Store) -> None:
    seed(store)
    again = _put(store, post(1), post(2))
    assert (again.inserted, again.updated, again.last_seq) == (0, 0, 3)
    assert store.stats(p.GetStoreStats()).posts == 3


def test_a_newer_edit_updates_the_post_under_a_new_seq(store: Store) -> None:
    seed(store)
    edited = _put(store, post(2, "changed text", edit_date=2000))
    assert edited.updated == 1 and _seqs(edited.edited) == [4]
    older = _put(store, post(2, "stale text", edit_date=1500))
    assert older.updated == 0
    since = store.posts_since(p.PostsSince(after_seq=3)).posts
    assert [(x.message_id, x.text, x.seq) for x in since] == [(2, "changed text", 4)]


def test_views_move_in_place_without_a_new_seq(store: Store) -> None:
    seed(store)
    _put(store, post(1, views=50, forwards=2))
    (first,) = [
        x for x in store.get_posts(p.GetPosts(channel_id=CHANNEL)).posts if x.message_id == 1
    ]
    assert (first.views, first.forwards, first.seq) == (50, 2, 1)


def test_deleted_posts_are_kept_marked_under_a_new_seq_and_stay_deleted(store: Store) -> None:
    seed(store)
    deleted = store.delete_posts(p.DeletePosts(channel_id=CHANNEL, message_ids=[1, 1, 99]))
    assert deleted.updated == 1 and [(x.message_id, x.deleted, x.seq) for x in deleted.edited] == [
        (1, True, 4)
    ]
    assert store.delete_posts(p.DeletePosts(channel_id=CHANNEL, message_ids=[1])).updated == 0
    assert _put(store, post(1, "back", edit_date=9999)).updated == 0
    assert store.posts_since(p.PostsSince(after_seq=3)).posts[0].deleted


def test_a_channels_posts_page_newest_first_by_message_id(store: Store) -> None:
    store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
    _put(store, *[post(i) for i in range(1, 11)])
    first = store.get_posts(p.GetPosts(channel_id=CHANNEL, limit=4)).posts
    second = store.get_posts(
        p.GetPosts(channel_id=CHANNEL, before_id=first[-1].message_id, limit=4)
    )
    assert [x.message_id for x in first + second.posts] == list(range(10, 2, -1))


def test_posts_since_pages_in_seq_order_and_filters_channels(store: Store) -> None:
    seed(store)
    _put(store, post(1), post(2), channel=OTHER)
    seen: list[int] = []
    after = 0
    while page := store.posts_since(p.PostsSince(after_seq=after, limit=2)).posts:
        seen += _seqs(page)
        after = page[-1].seq
    assert seen == [1, 2, 3, 4, 5]
    other = store.posts_since(p.PostsSince(channel_ids=[OTHER])).posts
    assert [(x.channel_id, x.seq) for x in other] == [(OTHER, 4), (OTHER, 5)]


def test_a_page_says_whether_more_posts_follow(store: Store) -> None:
    seed(store)
    assert store.posts_since(p.PostsSince(limit=2)).more
    assert not store.posts_since(p.PostsSince(limit=3)).more
    assert store.get_posts(p.GetPosts(channel_id=CHANNEL, limit=1)).more


def test_a_page_of_long_posts_fits_in_a_frame_and_paging_gets_them_all(store: Store) -> None:
    store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
    long_text = "é" * p.MAX_TEXT  # 128 KiB of UTF-8 each
    for start in range(1, 41, 10):
        _put(store, *[post(i, long_text) for i in range(start, start + 10)])
    seen: list[int] = []
    after = 0
    while True:
        page = store.posts_since(p.PostsSince(after_seq=after, limit=p.MAX_PAGE))
        assert len(pack_body(page)) < DEFAULT_MAX_FRAME_BYTES
        seen += _seqs(page.posts)
        if not page.more:
            break
        after = page.posts[-1].seq
    assert seen == list(range(1, 41))


# -- search -------------------------------------------------------------------------------------


def test_search_finds_words_skips_deleted_posts_and_follows_edits(store: Store) -> None:
    store.save_channel(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
    store.save_channel(p.SaveChannel(channel=p.Channel(id=OTHER)))
    _put(store, post(1, "Café opening today"), post(2, "rocket launch"), post(3, "cafe closed"))
    _put(store, post(1, "cafe in the other channel"), channel=OTHER)

    def found(query: str, channel: int = 0) -> list[tuple[int, int]]:
        posts = store.search_posts(p.SearchPosts(query=query, channel_id=channel)).posts
        return [(x.channel_id, x.message_id) for x in posts]

    assert found("cafe", CHANNEL) == [(CHANNEL, 3), (CHANNEL, 1)]  # newest first, diacritics
    assert len(found("cafe")) == 3
    store.delete_posts(p.DeletePosts(channel_id=CHANNEL, message_ids=[3]))
    _put(store, post(2, "rocket scrubbed", edit_date=5000))
    assert found("cafe", CHANNEL) == [(CHANNEL, 1)]
    assert found("launch") == [] and found("scrubbed") == [(CHANNEL, 2)]
    assert found('"rocket scrubbed" OR opening') == [(CHANNEL, 2), (CHANNEL, 1)]


def test_the_index_matches_the_posts_after_edits_and_rollbacks_in_a_batch(store: Store) -> None:
    seed(store)
    store.begin()
    _put(store, post(4, "alpha"))
    _put(store, post(4, "gamma", edit_date=1), post(2, "delta", edit_date=1))
    with pytest.raises(RuntimeError), store.atomic():
        _put(store, post(5, "beta"), post(4, "epsilon", edit_date=2))
        raise RuntimeError("a bug after a write")
    store.commit()
    assert store.integrity_check() == "ok"

    def found(query: str) -> list[int]:
        return [x.message_id for x in store.search_posts(p.SearchPosts(query=query)).posts]

    assert (found("alpha"), found("gamma"), found("delta"), found("beta")) == ([], [4], [2], [])
    assert found("epsilon") == [] and found("number") == [3, 1]
    store._conn.execute(  # a post written behind the Store's back is not indexed  # noqa: SLF001
        "INSERT INTO posts (channel_id, message_id, seq, date, text) VALUES (?, 9, 99, 1, 'x')",
        (CHANNEL,),
    )
    assert "full-text index" in store.integrity_check()


def test_hostile_looking_but_valid_queries_are_just_searched(store: Store) -> None:
    seed(store)
    for query in ['"\'; DROP TABLE posts; --"', '"x\') OR 1=1 --"', "post*"]:
        store.search_posts(p.SearchPosts(query=query))
    assert store.stats(p.GetStoreStats()).posts == 3


# -- cursors and deliveries ---------------------------------------------------------------------


def test_a_cursor_never_moves_backwards_nor_past_the_last_seq(store: Store) -> None:
    seed(store)
    assert store.get_cursor(p.GetCursor(name="new")).seq == 0
    assert store.save_cursor(p.SaveCursor(name="consumer", seq=1)).seq == 2
    assert store.save_cursor(p.SaveCursor(name="consumer", seq=3)).seq == 3
    with pytest.raises(Invalid, match="beyond"):
        store.save_cursor(p.SaveCursor(name="consumer", seq=4))
    assert store.get_cursor(p.GetCursor(name="consumer")).seq == 3


def test_a_sent_delivery_is_final(store: Store) -> None:
    seed(store)  # bot:b:1 has post 1 delivered ("sent")
    key = {"subscriber": "bot:b:2", "channel_id": CHANNEL, "message_id": 2}
    pending = store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**key, status="pending")))
    assert pending.created and pending.delivery.seq == 2 and pending.delivery.attempts == 1
    sent = p.Delivery(**key, status="sent", sent_message_id=77)
    assert store.record_delivery(p.RecordDelivery(delivery=sent)).delivery.attempts == 2
    late = store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**key, status="failed")))
    assert not late.created
    assert (late.delivery.status, late.delivery.sent_message_id) == ("sent", 77)


def test_a_sent_delivery_becomes_deleted_once_and_only_a_sent_one(store: Store) -> None:
    seed(store)  # bot:b:1 has post 1 delivered ("sent")
    key = {"subscriber": "bot:b:1", "channel_id": CHANNEL, "message_id": 1}
    sent = store.record_delivery(
        p.RecordDelivery(delivery=p.Delivery(**key, status="sent", sent_message_id=5))
    ).delivery
    gone = store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**key, status="deleted")))
    assert not gone.created and gone.delivery.status == "deleted"
    assert gone.delivery.sent_message_id == sent.sent_message_id  # the copy's id is kept
    assert gone.delivery.attempts == sent.attempts + 1
    for status in ("deleted", "sent", "failed"):
        again = store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**key, status=status)))
        assert again.delivery == gone.delivery  # final: a repeat changes nothing
    pending = {"subscriber": "bot:b:2", "channel_id": CHANNEL, "message_id": 2}
    store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**pending, status="pending")))
    for body in (pending, {**pending, "message_id": 3}):
        with pytest.raises(Invalid, match="only a sent delivery"):
            store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**body, status="deleted")))
    assert store.get_deliveries(p.GetDeliveries(status="deleted")).deliveries == [gone.delivery]


def test_a_schema_4_database_keeps_its_deliveries_and_accepts_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite3"
    with monkeypatch.context() as before:
        before.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        old = Store(path)
        assert old.schema_version == 4
        seed(old)
        kept = old.get_deliveries(p.GetDeliveries()).deliveries
        old.close()
    store = Store(path)
    assert store.schema_version == len(migrations.MIGRATIONS)
    assert store.get_deliveries(p.GetDeliveries()).deliveries == kept
    key = {"subscriber": "bot:b:1", "channel_id": CHANNEL, "message_id": 1}
    gone = store.record_delivery(p.RecordDelivery(delivery=p.Delivery(**key, status="deleted")))
    assert gone.delivery.status == "deleted"
    store.close()


def test_deliveries_are_listed_by_every_filter_given(store: Store) -> None:
    seed(store)
    for subscriber, message_id, status in [("a", 2, "pending"), ("b", 3, "failed")]:
        delivery = p.Delivery(
            subscriber=subscriber, channel_id=CHANNEL, message_id=message_id, status=status
        )
        store.record_delivery(p.RecordDelivery(delivery=delivery))

    def keys(**filters: object) -> list[tuple[str, int]]:
        found = store.get_deliveries(p.GetDeliveries(**filters)).deliveries  # type: ignore[arg-type]
        return [(d.subscriber, d.message_id) for d in found]

    assert keys() == [("bot:b:1", 1), ("a", 2), ("b", 3)]
    assert keys(status="pending") == [("a", 2)]
    assert keys(after_seq=1, limit=1) == [("a", 2)]
    assert keys(subscriber="b", channel_id=CHANNEL, message_id=3) == [("b", 3)]


def test_stats_count_what_is_kept(store: Store) -> None:
    seed(store)
    stats = store.stats(p.GetStoreStats())
    assert (stats.channels, stats.subscriptions, stats.posts, stats.last_seq) == (2, 1, 3, 3)
    assert stats.schema_version == len(migrations.MIGRATIONS) and stats.db_bytes > 0
    assert [(c.channel_id, c.posts) for c in stats.per_channel] == [(OTHER, 0), (CHANNEL, 3)]


# -- transactions -----------------------------------------------------------------------------


def test_a_failure_inside_a_transaction_rolls_back_only_its_own_savepoint(store: Store) -> None:
    seed(store)
    store.begin()
    _put(store, post(4))
    with pytest.raises(Invalid):
        _put(store, post(5), p.PostData(message_id=6, date=1))  # neither text nor media
    with pytest.raises(RuntimeError), store.atomic():
        _put(store, post(7))
        raise RuntimeError("a bug after a write")
    store.commit()
    assert [x.message_id for x in store.posts_since(p.PostsSince(after_seq=3)).posts] == [4]
    assert _put(store, post(8)).stored[0].seq == 5  # 5 was never committed, never seen


def test_a_write_committed_in_a_file_is_there_for_the_next_opener(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    writer = Store(path, synchronous="full")
    seed(writer)
    reader = Store(path)  # another connection sees every commit at once
    assert reader.stats(p.GetStoreStats()).last_seq == 3
    assert reader.integrity_check() == "ok"
    reader.close()
    writer.close()
