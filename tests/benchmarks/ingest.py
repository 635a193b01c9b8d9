"""Ingest: posts made in sandbox channels, committed to the store by the monitor.

Two phases in one run, against one sandbox in this process, with the same posting load
(``--rate`` posts a second in all, round-robin over 20 channels, for ``--seconds``; each
post's text is the time it was made):

* **monitor**: the whole path as deployed: the reader accounts' session actors (two
  readers, one node process), ``parser:main`` (a node process) and ``store:main`` (a
  node process, a real SQLite file in WAL mode). A post is counted stored when its
  ``PostStored`` event (published after the store's commit) reaches a collector process
  (its own, as the baseline has); its latency is that moment minus the time in its text.
  Afterwards the store is read back: ``lost`` are posts made but not stored,
  ``duplicates`` events for a post seen twice.
* **baseline**: a bare Telethon client (the same sandbox, 20 other channels) whose
  ``NewMessage`` handler writes each post to SQLite itself (``INSERT OR IGNORE``, one
  commit per post), timed the same way at its commit.

``stored_per_s`` and ``baseline_per_s`` are posts stored per second from the first post
made to the last post stored; ``ratio`` their quotient. The load is the same offered
rate for both, so a ratio near 1 says the monitor keeps up with it; latency is where the
extra hops show. The last line printed is one JSON object: ``stored_per_s``,
``baseline_per_s``, ``ratio``, ``p50_ms``, ``p99_ms``, ``lost``, ``duplicates`` (and the
baseline's percentiles, the rate and the duration).

    python tests/benchmarks/ingest.py --quick    # under 90 s
    python tests/benchmarks/ingest.py            # 30 s of posting a phase
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telethon import events  # noqa: E402
from telethon.sessions import StringSession  # noqa: E402

from protocols import parser as p  # noqa: E402
from protocols.events import PostStored, stored_topic  # noqa: E402
from runtime.client import Client, Subscriber  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from sandbox import SandboxThread  # noqa: E402
from sandbox.client import new_client  # noqa: E402
from tests.parser.support import FAST_PARSER, PARSER, TIMEOUT, Monitor, marked  # noqa: E402
from tests.parser.support import stored_ids as store_ids  # noqa: E402
from tests.session.support import Phones  # noqa: E402

CHANNELS = 20
# The reconciler at a slow pace: this measures the live path.
PARSER_CONFIG = {
    **FAST_PARSER,
    "backfill": "1",
    "reconcile_min_s": "5.0",
    "reconcile_s": "30.0",
    "reconcile_max_s": "60.0",
}


def post_for(sandbox: SandboxThread, channel_ids: list[int], rate: float, seconds: float) -> int:
    """Post ``rate`` posts a second in all over ``channel_ids`` for ``seconds``, each
    post's text the time it was made; returns how many were made."""
    per_round = len(channel_ids)
    interval = per_round / rate
    made = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        sandbox.control.post_many(channel_ids, 1, text=f"{time.time():.6f}")
        made += per_round
        next_round = start + (made / per_round) * interval
        time.sleep(max(0.0, next_round - time.monotonic()))
    return made


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Collector(threading.Thread):
    """Receives ``PostStored`` events: (channel, message) -> latency, arrival times."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.subscriber = Subscriber(endpoint, [stored_topic()])
        self.latencies: list[float] = []
        self.seen: Counter[tuple[int, int]] = Counter()
        self.last_at = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            item = self.subscriber.receive(0.2)
            if item is None or not isinstance(item[1], PostStored):
                continue
            now = time.time()
            post = item[1].post
            self.seen[(post.channel_id, post.message_id)] += 1
            try:
                self.latencies.append(now - float(post.text))
            except ValueError:
                continue  # a post of the setup (backfill), not of the load
            self.last_at = now
        self.subscriber.close()


def measured(
    target: Callable[..., None],
    args: tuple[object, ...],
    sandbox: SandboxThread,
    channel_ids: list[int],
    rate: float,
    seconds: float,
) -> tuple[int, float, Any]:
    """Start ``target(*args, conn)`` in a process of its own, post the load once it says
    ready, tell it how many posts were made; returns (made, start time, its report)."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    worker = spawn.Process(target=target, args=(*args, theirs))
    worker.start()
    try:
        if not ours.poll(60):
            raise RuntimeError(f"{target.__name__} did not start")
        ours.recv()
        started = time.time()
        made = post_for(sandbox, channel_ids, rate, seconds)
        ours.send(made)
        if not ours.poll(120):
            raise RuntimeError(f"{target.__name__} did not report")
        return made, started, ours.recv()
    finally:
        worker.join(30)


def collector_worker(endpoint: str, conn: Connection) -> None:
    """The monitor's side measured in a process of its own, as the baseline's is: the
    arrival of each ``PostStored`` event; reports when told how many posts were made."""
    collector = Collector(endpoint)
    collector.start()
    time.sleep(1.0)  # the subscription reaches the broker
    conn.send("ready")
    made = conn.recv()
    give_up = time.monotonic() + 60
    while len(collector.latencies) < made and time.monotonic() < give_up:
        time.sleep(0.1)
    time.sleep(1.0)  # late duplicates, if any
    collector.stop.set()
    collector.join()
    dups = sum(n - 1 for n in collector.seen.values() if n > 1)
    conn.send((collector.latencies, dups, collector.last_at))


def monitor_phase(sandbox: SandboxThread, tmp: Path, rate: float, seconds: float) -> dict:
    (tmp / "monitor").mkdir()
    monitor = Monitor(tmp / "monitor", sandbox=sandbox, parser=PARSER_CONFIG)
    clients: list[Client] = []

    def connect() -> Client:
        clients.append(monitor.client())
        return clients[-1]

    try:
        client = monitor.start(["r1", "r2"], connect)
        channels = []
        for n in range(CHANNELS):
            channel = sandbox.control.create_channel(f"Ingest {n}", username=f"ingest{n}x")
            sandbox.control.post(channel.id, "setup")
            client.request(PARSER, p.AddChannel(ref=f"@{channel.username}"), timeout=TIMEOUT)
            channels.append(channel)
        made, started, (latencies, dups, last_at) = measured(
            collector_worker,
            (monitor.events_out,),
            sandbox,
            [c.id for c in channels],
            rate,
            seconds,
        )
        stored = sum(len(store_ids(client, marked(c))) - 1 for c in channels)  # minus setup
        elapsed = max(last_at - started, 1e-9)
        return {
            "made": made,
            "stored": stored,
            "per_s": min(stored, made) / elapsed,
            "latencies": latencies,
            "lost": made - stored,
            "duplicates": dups,
        }
    finally:
        for c in clients:
            c.close()
        monitor.stop_all()


def baseline_worker(
    address: dict[str, object], session: str, wanted: list[int], db_path: str, conn: Connection
) -> None:
    """The baseline in a process of its own (as the monitor's parts are): a Telethon
    client whose handler commits each post to SQLite; reports when told to stop."""
    asyncio.run(_baseline(SimpleNamespace(**address), session, set(wanted), db_path, conn))


async def _baseline(
    address: SimpleNamespace, session: str, wanted: set[int], db_path: str, conn: Connection
) -> None:
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # the store's durability: survives kill -9
    db.execute(
        "CREATE TABLE posts (channel_id INTEGER, message_id INTEGER, date INTEGER, text TEXT,"
        " PRIMARY KEY (channel_id, message_id))"
    )
    latencies: list[float] = []
    seen: Counter[tuple[int, int]] = Counter()
    last_at = 0.0

    async def on_post(event: events.NewMessage.Event) -> None:
        nonlocal last_at
        if event.chat_id not in wanted:
            return
        msg = event.message
        db.execute(
            "INSERT OR IGNORE INTO posts VALUES (?, ?, ?, ?)",
            (event.chat_id, msg.id, int(msg.date.timestamp()), msg.message),
        )
        db.commit()
        last_at = time.time()
        seen[(event.chat_id, msg.id)] += 1
        latencies.append(last_at - float(msg.message))

    client = new_client(address, StringSession(session))  # type: ignore[arg-type]
    await client.connect()
    client.add_event_handler(on_post, events.NewMessage())
    await client.get_me()  # updates flow once the client has asked something
    conn.send("ready")
    while not conn.poll():
        await asyncio.sleep(0.1)
    made = conn.recv()  # posting is over: wait for the last of them (or give up)
    give_up = time.monotonic() + 60
    while len(latencies) < made and time.monotonic() < give_up:
        await asyncio.sleep(0.1)
    stored = db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
    dups = sum(n - 1 for n in seen.values() if n > 1)
    conn.send((latencies, stored, dups, last_at))
    await client.disconnect()
    db.close()


def baseline_phase(sandbox: SandboxThread, tmp: Path, rate: float, seconds: float) -> dict:
    phones = Phones(sandbox)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Telethon greets on stdout
            tg, account = phones.user("Baseline", username="baseline_reader")
        session = StringSession.save(tg.session)
    finally:
        phones.close()  # the worker uses the account's auth key from here on
    channels = []
    for n in range(CHANNELS):
        channel = sandbox.control.create_channel(f"Baseline {n}", username=f"base{n}x")
        sandbox.control.add_member(channel.id, account.id)
        channels.append(channel)
    address = {"host": sandbox.host, "port": sandbox.port, "public_key_pem": sandbox.public_key_pem}
    args = (address, session, [marked(c) for c in channels], str(tmp / "base.db"))
    made, started, (latencies, stored, dups, last_at) = measured(
        baseline_worker, args, sandbox, [c.id for c in channels], rate, seconds
    )
    return {
        "made": made,
        "stored": stored,
        "per_s": min(stored, made) / max(last_at - started, 1e-9),
        "latencies": latencies,
        "lost": made - stored,
        "duplicates": dups,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of posting a phase")
    parser.add_argument("--rate", type=float, default=200.0, help="posts a second in all")
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    configure_logging("warning")  # to stderr: stdout is the report's
    sandbox = SandboxThread().start()
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
            ours = monitor_phase(sandbox, Path(tmp), args.rate, seconds)
            base = baseline_phase(sandbox, Path(tmp), args.rate, seconds)
    finally:
        sandbox.stop()
    ms = [x * 1000 for x in ours["latencies"]]
    base_ms = [x * 1000 for x in base["latencies"]]
    print(f"{CHANNELS} channels, {args.rate:.0f} posts/s offered for {seconds:.0f} s a phase")
    print(f"{'':10} {'made':>6} {'stored':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'lost':>5}")
    for name, run, lat in (("monitor", ours, ms), ("baseline", base, base_ms)):
        print(
            f"{name:10} {run['made']:>6} {run['stored']:>7} {run['per_s']:>8.1f} "
            f"{percentile(lat, 0.5):>8.1f} {percentile(lat, 0.99):>8.1f} {run['lost']:>5}"
        )
    summary = {
        "stored_per_s": round(ours["per_s"], 1),
        "baseline_per_s": round(base["per_s"], 1),
        "ratio": round(ours["per_s"] / base["per_s"], 3) if base["per_s"] else 0.0,
        "p50_ms": round(percentile(ms, 0.5), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "lost": ours["lost"],
        "duplicates": ours["duplicates"],
        "baseline_p50_ms": round(percentile(base_ms, 0.5), 1),
        "baseline_p99_ms": round(percentile(base_ms, 0.99), 1),
        "baseline_lost": base["lost"],
        "rate": args.rate,
        "seconds": seconds,
        "mean_ms": round(statistics.fmean(ms), 1) if ms else 0.0,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
