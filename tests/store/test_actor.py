"""The StoreActor in process (ActorHarness: a real mailbox and thread, no ZeroMQ), on a
real SQLite file: typed replies, replies only after commit, batches under load.

Load is made deterministic by holding the database's write lock from another
connection: the actor's first write waits for it while the rest queue up behind it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.store import StoreActor
from protocols import errors
from protocols import store as p
from protocols.codec import open_body
from protocols.envelope import Envelope
from runtime.testing import ActorHarness
from tests.store.support import CHANNEL, post

BATCH_LIMIT = 64


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.sqlite3"


def store_actor(path: Path, max_age_s: float = 60.0) -> functools.partial[StoreActor]:
    """The actor with batches bounded by count (``BATCH_LIMIT``), not by age unless asked."""
    return functools.partial(
        StoreActor, path=path, batch_limit=BATCH_LIMIT, batch_max_age_s=max_age_s
    )


@pytest.fixture
def harness(path: Path) -> Iterator[ActorHarness]:
    with ActorHarness(store_actor(path), address="store:main") as h:
        h.request(p.SaveChannel(channel=p.Channel(id=CHANNEL, username="news")))
        yield h


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection for the block."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("COMMIT")
        blocker.close()


def test_requests_get_their_declared_replies(harness: ActorHarness) -> None:
    put = harness.request(p.PutPosts(channel_id=CHANNEL, posts=[post(1), post(2)]))
    assert (put.inserted, put.last_seq) == (2, 2)
    since = harness.request(p.PostsSince(after_seq=1))
    assert [x.message_id for x in since.posts] == [2]
    assert harness.request(p.GetChannel(username="news")).last_message_id == 2
    refused = harness.ask(p.GetPosts(channel_id=-100777))
    assert isinstance(refused, errors.NotFound)


def test_every_write_is_answered_after_its_commit_and_writes_under_load_share_commits(
    harness: ActorHarness, path: Path
) -> None:
    checker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    visible_at_reply: list[bool] = []
    send_reply = harness.port.send_reply

    def check_then_reply(envelope: Envelope) -> None:
        # Runs where the actor replies: the posts must already be readable elsewhere.
        body = open_body(envelope.body)
        if isinstance(body, p.PostsPut):
            (message_id,) = [x.message_id for x in body.stored]
            row = checker.execute(
                "SELECT count(*) FROM posts WHERE message_id = ?", (message_id,)
            ).fetchone()
            visible_at_reply.append(row[0] == 1)
        send_reply(envelope)

    harness.port.send_reply = check_then_reply  # type: ignore[method-assign]
    before = harness.request(p.GetStoreStats()).commits
    with write_lock(path):
        ids = [harness.send(p.PutPosts(channel_id=CHANNEL, posts=[post(n)])) for n in range(1, 201)]
    replies = [harness.reply(request_id, timeout=20) for request_id in ids]
    assert all(isinstance(r, p.PostsPut) and r.inserted == 1 for r in replies)
    assert visible_at_reply == [True] * 200
    commits = harness.request(p.GetStoreStats()).commits - before
    assert commits <= 1 + math.ceil(199 / BATCH_LIMIT)
    checker.close()


def test_refused_writes_in_a_batch_leave_the_others_stored(
    harness: ActorHarness, path: Path
) -> None:
    bodies = [
        p.PutPosts(channel_id=CHANNEL, posts=[post(1)]),
        p.PutPosts(channel_id=-100777, posts=[post(2)]),
        p.PutPosts(channel_id=CHANNEL, posts=[post(3), p.PostData(message_id=4, date=1)]),
        p.Subscribe(subscriber="", channel_id=CHANNEL),
        p.PutPosts(channel_id=CHANNEL, posts=[post(5)]),
    ]
    with write_lock(path):
        ids = [harness.send(body) for body in bodies]
    kinds = [type(harness.reply(i)).__name__ for i in ids]
    assert kinds == ["PostsPut", "NotFound", "BadRequest", "BadRequest", "PostsPut"]
    stored = harness.request(p.GetPosts(channel_id=CHANNEL)).posts
    assert [x.message_id for x in stored] == [5, 1]


def test_a_read_behind_queued_writes_sees_them_all(harness: ActorHarness, path: Path) -> None:
    with write_lock(path):
        for n in range(1, 11):
            harness.send(p.PutPosts(channel_id=CHANNEL, posts=[post(n)]))
        read = harness.send(p.PostsSince())
    assert len(harness.reply(read, timeout=10).posts) == 10  # type: ignore[attr-defined]


def test_a_batch_at_its_age_bound_commits_while_writes_keep_coming(path: Path) -> None:
    with ActorHarness(store_actor(path, max_age_s=0.0), address="store:main") as h:
        h.request(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
        with write_lock(path):
            ids = [h.send(p.PutPosts(channel_id=CHANNEL, posts=[post(n)])) for n in range(1, 21)]
        assert all(isinstance(h.reply(i), p.PostsPut) for i in ids)
        assert h.request(p.GetStoreStats()).commits == 21  # the channel, then one per write


def test_a_stopped_store_has_committed_every_answered_write(path: Path) -> None:
    with ActorHarness(store_actor(path), address="store:main") as h:
        h.request(p.SaveChannel(channel=p.Channel(id=CHANNEL)))
        with write_lock(path):
            ids = [h.send(p.PutPosts(channel_id=CHANNEL, posts=[post(n)])) for n in range(1, 51)]
    answered = [h.port.replies.get(i) for i in ids]
    assert all(isinstance(r, p.PostsPut) for r in answered)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 50
