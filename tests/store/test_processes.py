"""``store:main`` in a real ``run.py`` node process, reached over real ZeroMQ sockets.

The world: a broker process and a node process hosting ``store=store:main``, whose
database is ``data/store.sqlite3`` under the test's directory; clients in this process
(one per thread, as ZeroMQ sockets are per thread).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import store as p
from runtime.client import Client
from runtime.errors import RequestError
from tests.runtime.support import Proc, System, wait_until
from tests.store.support import CHANNEL, OTHER, post

STORE = "store:main"
WRITERS = 4
POSTS_PER_PUT = 10


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    world = System(tmp_path)
    world.run_broker()
    yield world
    world.stop_all()


def start_store(system: System, node_id: str) -> Proc:
    """A node process hosting the store; waits until it serves (taking over if needed)."""
    return system.serving_node(node_id, "store=store:main", "store open", "--standby")


def _save_channels(client: Client, *channel_ids: int) -> None:
    for channel_id in channel_ids:
        client.request(STORE, p.SaveChannel(channel=p.Channel(id=channel_id)), timeout=10)


class Writer(threading.Thread):
    """Puts posts of ``CHANNEL`` as fast as answers come; remembers the acknowledged ids.

    Message ids are ``first``, ``first + 1``, ...; it stops at the first failed request
    (the store was killed) or when ``stop`` is set.
    """

    def __init__(self, endpoint: str, first: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.next_id = first
        self.stop = stop
        self.acked: list[int] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        with Client(self.endpoint) as client:
            while not self.stop.is_set():
                ids = list(range(self.next_id, self.next_id + POSTS_PER_PUT))
                self.next_id += POSTS_PER_PUT
                body = p.PutPosts(channel_id=CHANNEL, posts=[post(i) for i in ids])
                try:
                    put = client.request(STORE, body, timeout=2)
                except RequestError as exc:
                    self.failure = exc
                    return
                assert put.inserted == POSTS_PER_PUT
                self.acked += ids


def test_every_acknowledged_write_survives_kill_9_mid_write(system: System) -> None:
    node = start_store(system, "store-1")
    with system.client() as client:
        _save_channels(client, CHANNEL)
    stop = threading.Event()
    writers = [Writer(system.broker, 1 + k * 10_000_000, stop) for k in range(WRITERS)]
    for writer in writers:
        writer.start()
    wait_until(lambda: sum(len(w.acked) for w in writers) >= 3000, 60, "3,000 acknowledged posts")
    node.popen.kill()  # SIGKILL while the writers are in the middle of their requests
    node.popen.wait()
    for writer in writers:
        writer.join(timeout=10)
    stop.set()
    acked = {i for w in writers for i in w.acked}
    assert all(isinstance(w.failure, RequestError) for w in writers)

    # The file as the killed process left it (with its WAL), before anyone reopens it.
    with sqlite3.connect(system.tmp / "data" / "store.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)")
        stored = {i for (i,) in conn.execute("SELECT message_id FROM posts")}
    assert acked <= stored, f"{len(acked - stored)} acknowledged posts lost"
    start_store(system, "store-2")  # reopens the file the killed process was writing
    with system.client() as client:
        stats = client.request(STORE, p.GetStoreStats(), timeout=10)
        since = client.request(STORE, p.PostsSince(after_seq=stats.last_seq - 1), timeout=10)
    assert stats.posts == len(stored) and stats.last_seq == len(stored)
    assert [x.seq for x in since.posts] == [stats.last_seq]


def test_a_consumer_paging_posts_since_while_posts_arrive_misses_none(system: System) -> None:
    start_store(system, "store-1")
    with system.client() as client:
        _save_channels(client, CHANNEL, OTHER)
    written: set[tuple[int, int]] = set()

    def write() -> None:
        with system.client() as client:
            for batch in range(100):  # 2,000 posts, alternating channels
                channel = CHANNEL if batch % 2 else OTHER
                posts = [post(batch * 20 + i) for i in range(1, 21)]
                client.request(STORE, p.PutPosts(channel_id=channel, posts=posts), timeout=10)
                written.update((channel, x.message_id) for x in posts)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    seen: list[p.Post] = []
    with system.client() as client:
        cursor = client.request(STORE, p.GetCursor(name="consumer"), timeout=10).seq

        def read_page() -> bool:
            nonlocal cursor
            page = client.request(STORE, p.PostsSince(after_seq=cursor, limit=97), timeout=10)
            if page.posts:
                seen.extend(page.posts)
                cursor = client.request(
                    STORE, p.SaveCursor(name="consumer", seq=page.posts[-1].seq), timeout=10
                ).seq
            return len(seen) >= 2000

        wait_until(read_page, 60, "2,000 posts paged")
        writer.join(timeout=10)
        read_page()  # once more after the writer is done: nothing beyond the 2,000
        saved = client.request(STORE, p.GetCursor(name="consumer"), timeout=10).seq
    assert [x.seq for x in seen] == list(range(1, 2001))  # all of them, 0 gaps, none twice
    assert {(x.channel_id, x.message_id) for x in seen} == written
    assert saved == 2000
