"""Writes through ``store:main`` against writers that commit to one SQLite file themselves.

What it measures, for ``synchronous`` = ``normal`` (the default) and ``full``:

* **store**: ``python run.py --role all --actors store=store:main`` (no accounts), and N
  writer threads here, each with its own client, each sending ``PutPosts`` of one post
  and waiting for the answer (acknowledged after commit), as fast as answers come.
  Counted: acknowledged posts per second, request latency (p50, p99), and the commits
  the store made (``GetStoreStats.commits``): under load, writes waiting in the mailbox
  share one commit.
* **baseline**: N threads, each with its own ``sqlite3`` connection to one WAL file with
  the same ``synchronous`` and a 5 s busy timeout (what several processes writing one
  database do), inserting one post and committing it each time. Counted: posts per
  second, ``database is locked`` errors.

The last line printed is one JSON object: ``puts_per_s``, ``baseline_per_s``, ``ratio``,
``p50_ms``, ``p99_ms``, ``writes_per_commit`` (for ``normal``) and the same figures under
``full``, with ``writers`` and ``seconds``.

    python tests/benchmarks/store_writes.py --quick    # about 40 s
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocols import store as p  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.errors import RequestError  # noqa: E402

STORE = "store:main"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def store_system(workdir: Path, synchronous: str) -> Iterator[str]:
    """A one-process system hosting only ``store:main``; yields its broker endpoint."""
    endpoint, events_in, events_out = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    env = {
        **os.environ,
        "SWITCHBOARD__RUNTIME__BROKER_ENDPOINT": endpoint,
        "SWITCHBOARD__RUNTIME__EVENTS_IN_ENDPOINT": events_in,
        "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT": events_out,
        "SWITCHBOARD__LOG__LEVEL": "warning",
        "SWITCHBOARD__STORE__SYNCHRONOUS": synchronous,
    }
    log_path = workdir / "system.log"
    command = [sys.executable, str(ROOT / "run.py"), "--role", "all"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--actors", "store=store:main", "--accounts", ""],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
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
    finally:
        process.terminate()
        process.wait(15)
        if process.returncode not in (0, -15):
            print(log_path.read_text(errors="replace"), file=sys.stderr)


def run_store(workdir: Path, synchronous: str, writers: int, seconds: float) -> Run:
    result = Run(seconds)
    lock = threading.Lock()

    def write(k: int, endpoint: str, start: threading.Barrier) -> None:
        latencies: list[float] = []
        errors = 0
        message_id = k * 100_000_000
        with Client(endpoint) as client:
            start.wait()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                message_id += 1
                body = p.PutPosts(
                    channel_id=CHANNEL,
                    posts=[p.PostData(message_id=message_id, date=1, text=f"post {message_id}")],
                )
                sent = time.monotonic()
                try:
                    client.request(STORE, body, timeout=10)
                except RequestError:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - sent)
        with lock:
            result.latencies += latencies
            result.written += len(latencies)
            result.errors += errors

    with store_system(workdir, synchronous) as endpoint, Client(endpoint) as client:
        before = client.request(STORE, p.GetStoreStats(), timeout=10).commits
        start = threading.Barrier(writers)
        threads = [
            threading.Thread(target=write, args=(k, endpoint, start)) for k in range(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.commits = client.request(STORE, p.GetStoreStats(), timeout=10).commits - before
    return result


def run_baseline(path: Path, synchronous: str, writers: int, seconds: float) -> Run:
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute(
        "CREATE TABLE posts (channel_id INTEGER, message_id INTEGER, text TEXT,"
        " UNIQUE (channel_id, message_id))"
    )
    setup.close()
    result = Run(seconds)
    lock = threading.Lock()
    start = threading.Barrier(writers)

    def write(k: int) -> None:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        latencies: list[float] = []
        errors = 0
        message_id = k * 100_000_000
        start.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            message_id += 1
            sent = time.monotonic()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO posts VALUES (?, ?, ?)",
                    (CHANNEL, message_id, f"post {message_id}"),
                )
                conn.execute("COMMIT")
            except sqlite3.OperationalError:
                errors += 1
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                continue
            latencies.append(time.monotonic() - sent)
        conn.close()
        with lock:
            result.latencies += latencies
            result.written += len(latencies)
            result.errors += errors
            result.commits += len(latencies)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def figures(store: Run, baseline: Run) -> dict[str, float | int]:
    return {
        "puts_per_s": round(store.per_s),
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
            store = run_store(workdir, synchronous, args.writers, seconds)
            baseline = run_baseline(
                workdir / "baseline.sqlite3", synchronous, args.writers, seconds
            )
            results[synchronous] = figures(store, baseline)
            f = results[synchronous]
            print(
                f"synchronous={synchronous:<6} store {f['puts_per_s']:>7,}/s "
                f"(p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, "
                f"{f['writes_per_commit']} writes per commit, {f['errors']} errors) | "
                f"baseline {f['baseline_per_s']:>7,}/s (p99 {f['baseline_p99_ms']} ms, "
                f"{f['baseline_locked']} locked) | ratio {f['ratio']}",
                flush=True,
            )
    summary = {**results["normal"], "full": results["full"]}
    print(json.dumps({**summary, "writers": args.writers, "seconds": seconds}))


if __name__ == "__main__":
    main()
