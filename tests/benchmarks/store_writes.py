"""Writes through ``store:main`` against writers that commit to one SQLite file themselves.

What it measures, for ``synchronous`` = ``normal`` (the default) and ``full``:

* **store**: ``python run.py --role all --actors store=store:main`` (no accounts), and N
  writer threads here, each with its own client, each sending ``PutPosts`` of one post
  and waiting for the answer (acknowledged after commit), as fast as answers come.
  Counted: acknowledged posts per second, request latency (p50, p99), and the commits
  the store made (``GetStoreStats.commits``): under load, writes waiting in the mailbox
  share one commit. Then ``Echo`` round trips to the echo actor in the same system, the
  same way: what the messaging alone allows.
* **baseline**: N threads, each with its own ``sqlite3`` connection to one WAL file of
  the store's schema with the same ``synchronous`` and a 5 s busy timeout (what several
  processes writing one database do), inserting one post (and its full-text entry) and
  committing it each time. Counted: posts per
  second, ``database is locked`` errors.

The last line printed is one JSON object: ``puts_per_s``, ``echo_per_s``, ``vs_echo``,
``baseline_per_s``, ``ratio``, ``p50_ms``, ``p99_ms``, ``writes_per_commit`` (for
``normal``) and the same figures under ``full``, with ``writers`` and ``seconds``.

    python tests/benchmarks/store_writes.py --quick    # about 40 s
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors.storage.migrations import apply_migrations  # noqa: E402
from protocols import demo  # noqa: E402
from protocols import store as p  # noqa: E402
from protocols.base import Message  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.errors import RequestError  # noqa: E402
from tests.benchmarks.runtime_rtt import one_process_system  # noqa: E402

STORE = "store:main"
BodyOf = Callable[[int, int], Message]
Send = Callable[[int], object]
OpenSender = Callable[[int], AbstractContextManager[Send]]
CHANNEL = -1001000000001


@dataclass
class Run:
    """What one side did in ``seconds``."""

    seconds: float
    written: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    commits: int = 0

    @property
    def per_s(self) -> float:
        return self.written / self.seconds

    def percentile_ms(self, q: float) -> float:
        if len(self.latencies) < 2:
            return 0.0
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1] * 1000


@contextmanager
def store_system(workdir: Path, synchronous: str) -> Iterator[str]:
    """A one-process system hosting ``store:main`` and ``echo``, ready; yields its broker
    endpoint."""
    settings = {"SWITCHBOARD__STORE__SYNCHRONOUS": synchronous}
    with one_process_system(workdir, "echo,store=store:main", settings) as (process, endpoint):
        with Client(endpoint) as client:
            give_up = time.monotonic() + 30
            while True:
                try:
                    client.request(STORE, p.SaveChannel(channel=p.Channel(id=CHANNEL)), timeout=1)
                    break
                except RequestError:
                    if time.monotonic() > give_up or process.poll() is not None:
                        raise
        yield endpoint


def closed_loop(writers: int, seconds: float, open_sender: OpenSender) -> Run:
    """``writers`` threads for ``seconds``, each doing its ``send(n)`` (its n-th operation)
    one at a time, as fast as they complete; a send that raises an Exception counts as an
    error. ``open_sender(k)`` gives thread k its own connection."""
    result = Run(seconds)
    lock = threading.Lock()
    start = threading.Barrier(writers)

    def run(k: int) -> None:
        latencies: list[float] = []
        errors = 0
        with open_sender(k) as send:
            start.wait()
            end = time.monotonic() + seconds
            for n in itertools.count(1):
                if time.monotonic() >= end:
                    break
                sent = time.monotonic()
                try:
                    send(n)
                except Exception:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - sent)
        with lock:
            result.latencies += latencies
            result.written += len(latencies)
            result.errors += errors

    threads = [threading.Thread(target=run, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def requests_of(endpoint: str, target: str, body: BodyOf) -> OpenSender:
    """Senders that ask ``target`` for ``body(k, n)`` over their own client."""

    @contextmanager
    def open_sender(k: int) -> Iterator[Send]:
        with Client(endpoint) as client:
            yield lambda n: client.request(target, body(k, n), timeout=10)

    return open_sender


def put_one(k: int, n: int) -> p.PutPosts:
    message_id = k * 100_000_000 + n
    post = p.PostData(message_id=message_id, date=1, text=f"post {message_id}")
    return p.PutPosts(channel_id=CHANNEL, posts=[post])


def echo_one(k: int, n: int) -> demo.Echo:
    return demo.Echo(text=f"post {k * 100_000_000 + n}")


def run_store(workdir: Path, synchronous: str, writers: int, seconds: float) -> tuple[Run, Run]:
    """PutPosts through the store, then Echo round trips in the same system (messaging
    alone): (store, echo)."""
    with store_system(workdir, synchronous) as endpoint, Client(endpoint) as client:
        before = client.request(STORE, p.GetStoreStats(), timeout=10).commits
        store = closed_loop(writers, seconds, requests_of(endpoint, STORE, put_one))
        store.commits = client.request(STORE, p.GetStoreStats(), timeout=10).commits - before
        echo = closed_loop(writers, seconds, requests_of(endpoint, "echo", echo_one))
    return store, echo


def run_baseline(path: Path, synchronous: str, writers: int, seconds: float) -> Run:
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    apply_migrations(setup)  # the store's own schema, full-text index included
    setup.execute("INSERT INTO channels (id) VALUES (?)", (CHANNEL,))
    setup.close()

    @contextmanager
    def open_sender(k: int) -> Iterator[Send]:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")

        def insert_and_commit(n: int) -> None:
            message_id = k * 100_000_000 + n
            text = f"post {message_id}"
            try:
                conn.execute("BEGIN IMMEDIATE")
                rowid = conn.execute(
                    "INSERT INTO posts (channel_id, message_id, seq, date, text)"
                    " VALUES (?, ?, ?, 1, ?)",
                    (CHANNEL, message_id, message_id, text),
                ).lastrowid
                conn.execute("INSERT INTO posts_fts (rowid, text) VALUES (?, ?)", (rowid, text))
                conn.execute("COMMIT")
            except sqlite3.OperationalError:  # database is locked
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        try:
            yield insert_and_commit
        finally:
            conn.close()

    result = closed_loop(writers, seconds, open_sender)
    result.commits = result.written
    return result


def figures(store: Run, echo: Run, baseline: Run) -> dict[str, float | int]:
    return {
        "puts_per_s": round(store.per_s),
        "echo_per_s": round(echo.per_s),
        "vs_echo": round(store.per_s / echo.per_s, 2) if echo.per_s else 0.0,
        "baseline_per_s": round(baseline.per_s),
        "ratio": round(store.per_s / baseline.per_s, 2) if baseline.per_s else 0.0,
        "p50_ms": round(store.percentile_ms(50), 2),
        "p99_ms": round(store.percentile_ms(99), 2),
        "baseline_p99_ms": round(baseline.percentile_ms(99), 2),
        "writes_per_commit": round(store.written / store.commits, 1) if store.commits else 0.0,
        "errors": store.errors,
        "baseline_locked": baseline.errors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per run (about 40 s)")
    parser.add_argument("--writers", type=int, default=8, help="writer threads each way")
    parser.add_argument("--seconds", type=float, help="how long each run lasts")
    args = parser.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    results: dict[str, dict[str, float | int]] = {}
    print(f"{args.writers} writers, {seconds:g} s per run, one post per request/commit")
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("normal", "full"):
            workdir = Path(tmp) / synchronous
            workdir.mkdir()
            store, echo = run_store(workdir, synchronous, args.writers, seconds)
            baseline = run_baseline(
                workdir / "baseline.sqlite3", synchronous, args.writers, seconds
            )
            results[synchronous] = figures(store, echo, baseline)
            f = results[synchronous]
            print(
                f"synchronous={synchronous:<6} store {f['puts_per_s']:>7,}/s "
                f"(p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, "
                f"{f['writes_per_commit']} writes per commit, {f['errors']} errors) | "
                f"baseline {f['baseline_per_s']:>7,}/s (p99 {f['baseline_p99_ms']} ms, "
                f"{f['baseline_locked']} locked) | ratio {f['ratio']} | "
                f"echo round trips {f['echo_per_s']:,}/s: store/echo {f['vs_echo']}",
                flush=True,
            )
    summary = {**results["normal"], "full": results["full"]}
    print(json.dumps({**summary, "writers": args.writers, "seconds": seconds}))


if __name__ == "__main__":
    main()
