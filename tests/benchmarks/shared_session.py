"""The seeds' setup, N processes sharing one Telethon session file, against one session actor.

What it measures, with N processes (default 4) each way:

* **shared**: each process opens THE SAME ``*.session`` file with Telethon's
  ``SQLiteSession`` (what ``TelegramClient("bench")`` opens, as several scripts sharing one
  account do) and uses it as a running client does: for every request result or update
  batch (``--rate`` a second) it looks a known peer up (``get_input_entity``, a read) and
  stores the result's entities (``process_entities`` of a ``messages.Messages`` carrying
  one user seen for the first time, a few known users and a channel, a write); every
  ``--save-interval`` seconds it stores the update state (``set_update_state`` for the
  account and the channel) and commits (``save()``); at the end it closes the session
  (a last commit). Telethon commits from its keepalive loop, once a minute, so that is
  the default interval: a client running less than a minute, like the seeds' monitors
  in their restart loops, commits only when it closes. Counted: ``sqlite3.OperationalError:
  database is locked`` from any of these calls, and **lost writes**: new users written
  by some process that are not in the file's ``entities`` table once every process has
  closed its session (``silently`` lost: the write raised nothing). Also the longest
  single call: Telethon makes these calls on the client's event loop, so a call waiting
  out SQLite's 5 s busy timeout freezes the whole client.
* **actor**: the account's session actor in a node process (``run.py --role node``)
  behind a broker, and N client processes sending it, one request at a time each, the
  mix a bot, a parser and an API send: ``ResolvePeer`` of usernames (each a user entity
  the actor's Telethon writes to the session file), ``FetchHistory`` of channels and
  ``GetMe``. Counted: ``database is locked`` in the node's log, requests answered with an
  error, and lost writes: peers resolved whose id is not in the session file's ``entities``
  table after the node has stopped. Also how many were already committed to the file
  while the node was running (what a crash of the node at that moment would keep).

The actor's proactive rate limits for resolving and history are raised in its config
(a user account may resolve one username per 10 s by default): they are policy, and this
measures the storage path. The sandbox runs in a process of its own.

The last line printed is one JSON object: ``shared_locked_errors``,
``shared_lost_writes``, ``actor_locked_errors``, ``actor_lost_writes``,
``actor_ops_per_s``, ``shared_ops_per_s``, ``n_processes``, ``seconds`` and details.

    python tests/benchmarks/shared_session.py --quick    # under 90 s
    python tests/benchmarks/shared_session.py            # a minute each way
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telethon.crypto import AuthKey  # noqa: E402
from telethon.sessions import SQLiteSession  # noqa: E402
from telethon.tl import types  # noqa: E402

from protocols import session as s  # noqa: E402
from protocols.base import Message  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.errors import RequestError  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from tests.benchmarks.session_overhead import (  # noqa: E402
    ADDRESS,
    PHONE,
    REPLY_TIMEOUT_S,
    START_TIMEOUT_S,
    SandboxProcess,
    deployment,
    sandbox_process,
)

LOCKED = "database is locked"
# Entities of the shared side: ids far from each other's ranges and from the sandbox's.
NEW_USER_BASE = 2_000_000_000
KNOWN_USER_BASE = 1_000_000
CHANNEL_BASE = 1_500_000_000
KNOWN_USERS = 50
KNOWN_CHANNELS = 20
# The actor side's world: usernames to resolve and channels to read.
USERNAMES = 500
CHANNELS = 5
POSTS = 20
# Per cycle of a client process: two resolves, one history, one get_me.
MIX = ("resolve", "resolve", "history", "me")


@dataclass(frozen=True)
class Mode:
    """How long each side runs, and the shared side's write pattern."""

    seconds: float
    rate: float  # requests or update batches per second per process
    save_interval: float  # seconds between set_update_state + save() (Telethon: 60)


QUICK = Mode(seconds=15.0, rate=50.0, save_interval=60.0)
FULL = Mode(seconds=60.0, rate=50.0, save_interval=60.0)


# -- shared: N processes on one session file ---------------------------------------------


@dataclass
class SharedResult:
    """What one process sharing the file did; ``locked`` counts errors by call."""

    ops: int = 0
    locked: Counter[str] = field(default_factory=Counter)
    written: list[int] = field(default_factory=list)  # every new user id it wrote
    accepted: list[int] = field(default_factory=list)  # those whose write raised nothing
    longest_call_s: float = 0.0


def new_user(process: int, seq: int) -> types.User:
    """A user this process sees for the first time (ids unique across processes)."""
    user_id = NEW_USER_BASE + process * 10_000_000 + seq
    return types.User(
        id=user_id,
        access_hash=random.getrandbits(63),
        first_name=f"User {user_id}",
        username=f"user{user_id}",
    )


def known_user(k: int) -> types.User:
    return types.User(
        id=KNOWN_USER_BASE + k,
        access_hash=KNOWN_USER_BASE + k,
        first_name=f"Regular {k}",
        username=f"regular{k}",
    )


def channel(k: int) -> types.Channel:
    return types.Channel(
        id=CHANNEL_BASE + k,
        title=f"Channel {k}",
        photo=types.ChatPhotoEmpty(),
        date=datetime.datetime.now(datetime.UTC),
        access_hash=CHANNEL_BASE + k,
        username=f"channel{k}",
        broadcast=True,
    )


def shared_main(path: str, process: int, mode: Mode, conn: Connection) -> None:
    """One of the processes sharing the file: paced writes for ``mode.seconds``."""
    session = SQLiteSession(path)
    result = SharedResult()
    conn.send("ready")
    start = conn.recv()  # the same wall-clock start for every process
    time.sleep(max(0.0, start - time.time()))
    begin = time.monotonic()
    end = begin + mode.seconds
    next_save = begin + mode.save_interval
    pts = 0

    def call(kind: str, fn: Callable[..., object], *args: object) -> bool:
        """Run one session call as Telethon does; False if it raised 'database is locked'."""
        started = time.monotonic()
        try:
            fn(*args)
        except sqlite3.OperationalError as exc:
            if LOCKED not in str(exc):
                raise
            result.locked[kind] += 1
            return False
        finally:
            result.longest_call_s = max(result.longest_call_s, time.monotonic() - started)
        return True

    for seq in itertools.count():
        now = time.monotonic()
        if now >= end:
            break
        user = new_user(process, seq)
        batch = types.messages.Messages(
            messages=[],
            topics=[],
            chats=[channel(seq % KNOWN_CHANNELS)],
            users=[user, *(known_user((seq + i) % KNOWN_USERS) for i in range(3))],
        )
        # A request names a peer: Telethon looks it up in the session (a read), then
        # stores the entities of the result (a write). The read matters: after a write
        # that timed out, sqlite3 leaves its transaction open, the read's SHARED lock then
        # stays until a commit, so this process's next writes fail at once (SQLite does
        # not wait where waiting could deadlock) and the lock holder cannot commit.
        call("get_input_entity", session.get_input_entity, KNOWN_USER_BASE + seq % KNOWN_USERS)
        result.written.append(user.id)
        if call("process_entities", session.process_entities, batch):
            result.accepted.append(user.id)
        result.ops += 1
        if now >= next_save:
            pts += 1
            date = datetime.datetime.now(datetime.UTC)
            state = types.updates.State(pts=pts, qts=0, date=date, seq=pts, unread_count=0)
            call("set_update_state", session.set_update_state, 0, state)
            call("set_update_state", session.set_update_state, CHANNEL_BASE, state)
            call("save", session.save)
            next_save += mode.save_interval
        # Paced: a client writes as results and updates come, not in a tight loop.
        time.sleep(max(0.0, begin + (seq + 1) / mode.rate - time.monotonic()))
    # What TelegramClient.disconnect() ends with; if it fails the process exits anyway.
    call("close", session.close)
    conn.send(result)


def new_session_file(path: Path) -> None:
    """A session file as a logged-in client leaves it: DC address, auth key, the account's
    regular contacts and channels."""
    session = SQLiteSession(str(path))
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(os.urandom(256))
    session.process_entities(
        types.contacts.ResolvedPeer(
            peer=types.PeerUser(KNOWN_USER_BASE),
            chats=[channel(k) for k in range(KNOWN_CHANNELS)],
            users=[known_user(k) for k in range(KNOWN_USERS)],
        )
    )
    session.close()


def entity_ids(path: Path) -> set[int]:
    """Ids in the file's ``entities`` table (read-only: what any reader would find)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("select id from entities")}


@dataclass(frozen=True)
class SharedSummary:
    processes: list[SharedResult]
    present: set[int]
    seconds: float

    @property
    def ops(self) -> int:
        return sum(r.ops for r in self.processes)

    @property
    def locked(self) -> Counter[str]:
        return sum((r.locked for r in self.processes), Counter())

    @property
    def written(self) -> set[int]:
        return {i for r in self.processes for i in r.written}

    @property
    def lost(self) -> set[int]:
        return self.written - self.present

    @property
    def lost_silently(self) -> set[int]:
        return {i for r in self.processes for i in r.accepted} - self.present


def run_shared(mp: SpawnContext, workdir: Path, mode: Mode, n: int) -> SharedSummary:
    path = workdir / "shared.session"
    new_session_file(path)
    pipes = []
    procs = []
    for i in range(n):
        conn, child = mp.Pipe()
        proc = mp.Process(target=shared_main, args=(str(path), i, mode, child), daemon=True)
        proc.start()
        child.close()
        pipes.append(conn)
        procs.append(proc)
    for conn in pipes:
        if not conn.poll(START_TIMEOUT_S):
            raise RuntimeError("a shared-session process did not start")
        conn.recv()
    start = time.time() + 0.2
    for conn in pipes:
        conn.send(start)
    # Up to SQLite's 5 s busy timeout for each of a process's last calls, and then some.
    results = [conn.recv() for conn in pipes if conn.poll(mode.seconds + 30)]
    for proc in procs:
        proc.join(5)
    if len(results) < n:
        raise RuntimeError("a shared-session process did not finish")
    return SharedSummary(results, entity_ids(path), mode.seconds)


# -- actor: N processes through one session actor ----------------------------------------


@dataclass
class ActorResult:
    """What one client process of the actor did."""

    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    resolved: list[int] = field(default_factory=list)


def actor_main(endpoint: str, process: int, seconds: float, conn: Connection) -> None:
    """One client process: the mix, one request at a time, for ``seconds``."""
    client = Client(endpoint)
    result = ActorResult()
    # Each process starts elsewhere in the usernames, so between them they cover them all.
    names = itertools.cycle(
        f"peer{(process * USERNAMES // 4 + k) % USERNAMES}" for k in range(USERNAMES)
    )
    conn.send("ready")
    start = conn.recv()
    time.sleep(max(0.0, start - time.time()))
    end = time.monotonic() + seconds
    for op in itertools.cycle(MIX):
        if time.monotonic() >= end:
            break
        body: Message = {
            "resolve": lambda: s.ResolvePeer(peer=next(names)),
            "history": lambda: s.FetchHistory(peer=f"bench{result.ops['history'] % CHANNELS}"),
            "me": lambda: s.GetMe(),
        }[op]()
        try:
            reply = client.request(ADDRESS, body, timeout=REPLY_TIMEOUT_S)
        except RequestError as exc:
            result.errors[type(exc.error).__name__] += 1
            continue
        result.ops[op] += 1
        if isinstance(reply, s.Peer):
            result.resolved.append(reply.id)
    conn.send(result)


@dataclass(frozen=True)
class ActorSummary:
    processes: list[ActorResult]
    committed_while_running: set[int]
    present: set[int]
    locked_in_log: int
    errors_in_log: int
    seconds: float

    @property
    def ops(self) -> Counter[str]:
        return sum((r.ops for r in self.processes), Counter())

    @property
    def errors(self) -> Counter[str]:
        return sum((r.errors for r in self.processes), Counter())

    @property
    def resolved(self) -> set[int]:
        return {i for r in self.processes for i in r.resolved}

    @property
    def lost(self) -> set[int]:
        return self.resolved - self.present


def prepare_world(sandbox: SandboxProcess) -> None:
    """The account, ``USERNAMES`` users to resolve, ``CHANNELS`` channels with posts."""
    sandbox.call("create_user", phone=PHONE, first_name="Bench")
    sandbox.call_many(
        "create_user",
        [
            {"phone": f"+1666{k:07d}", "first_name": f"Peer {k}", "username": f"peer{k}"}
            for k in range(USERNAMES)
        ],
    )
    for k in range(CHANNELS):
        sandbox.call("create_channel", title=f"Bench {k}", username=f"bench{k}")
        sandbox.call_many("post", [{"channel": f"bench{k}", "text": f"{i}"} for i in range(POSTS)])


def run_actor(mp: SpawnContext, workdir: Path, mode: Mode, n: int) -> ActorSummary:
    with sandbox_process(mp) as sandbox:
        prepare_world(sandbox)
        with deployment(workdir, sandbox, limits=("resolve", "history")) as system:
            pipes = []
            for i in range(n):
                conn, child = mp.Pipe()
                mp.Process(
                    target=actor_main, args=(system.endpoint, i, mode.seconds, child), daemon=True
                ).start()
                child.close()
                pipes.append(conn)
            for conn in pipes:
                if not conn.poll(START_TIMEOUT_S):
                    raise RuntimeError("an actor client process did not start")
                conn.recv()
            start = time.time() + 0.2
            for conn in pipes:
                conn.send(start)
            results = [conn.recv() for conn in pipes if conn.poll(mode.seconds + 30)]
            if len(results) < n:
                raise RuntimeError("an actor client process did not finish")
            committed = entity_ids(system.session_file)
            system.node.stop()
            log = system.node.log_text()
            errors_in_log = sum(1 for e in system.node.log_events() if e.get("level") == "error")
            present = entity_ids(system.session_file)
    return ActorSummary(
        processes=results,
        committed_while_running=committed,
        present=present,
        locked_in_log=log.count(LOCKED),
        errors_in_log=errors_in_log,
        seconds=mode.seconds,
    )


# -- the report --------------------------------------------------------------------------


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def line(label: str, value: float | str, note: str = "") -> str:
    return f"  {label:36}{value:>9}  {note}".rstrip()


def report(mode: Mode, n: int, shared: SharedSummary, actor: ActorSummary) -> Iterator[str]:
    """The readable table, then the JSON line."""
    locked = sum(shared.locked.values())
    written, lost, silent = len(shared.written), len(shared.lost), len(shared.lost_silently)
    longest = max(r.longest_call_s for r in shared.processes)
    resolved = actor.resolved
    actor_ops = sum(actor.ops.values())
    uncommitted = len(resolved - actor.committed_while_running)
    per_process = ", ".join(f"{r.ops}/{sum(r.locked.values())}" for r in shared.processes)
    yield (
        f"{n} processes, {mode.seconds:g} s each way; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    yield ""
    yield (
        f"shared: {n} processes on one SQLiteSession file, each writing entities "
        f"{mode.rate:g}/s and update state + save() every {mode.save_interval:g} s"
    )
    yield line(
        "entity writes (process_entities)", shared.ops, f"{shared.ops / mode.seconds:,.0f}/s"
    )
    yield line(
        "'database is locked' errors",
        locked,
        f"{locked / mode.seconds:,.1f}/s: {counts(shared.locked)}",
    )
    yield line("new users written", written)
    yield line("... not in the file at the end", lost, percent(lost, written))
    yield line("... of those, the write raised nothing", silent, "lost silently")
    yield line("longest single session call (s)", f"{longest:.2f}", "the client's loop frozen")
    yield line("per process: writes/locked errors", "", per_process)
    yield ""
    yield f"actor: {n} client processes -> broker -> node ({ADDRESS}), one request at a time each"
    yield line(
        "requests answered", actor_ops, f"{actor_ops / mode.seconds:,.1f}/s: {counts(actor.ops)}"
    )
    yield line("requests answered with an error", sum(actor.errors.values()), counts(actor.errors))
    yield line("'database is locked' in the node log", actor.locked_in_log)
    yield line("error lines in the node log", actor.errors_in_log)
    yield line("distinct peers resolved", len(resolved))
    yield line(
        "... not in the file after the stop",
        len(actor.lost),
        percent(len(actor.lost), len(resolved)),
    )
    yield line(
        "... not committed before the stop",
        uncommitted,
        f"{percent(uncommitted, len(resolved))}: what a crash then would have lost",
    )
    figures = {
        "shared_locked_errors": locked,
        "shared_lost_writes": lost,
        "actor_locked_errors": actor.locked_in_log,
        "actor_lost_writes": len(actor.lost),
        "actor_ops_per_s": round(actor_ops / mode.seconds, 1),
        "shared_ops_per_s": round(shared.ops / mode.seconds, 1),
        "n_processes": n,
        "seconds": mode.seconds,
        "shared_writes": written,
        "shared_lost_fraction": round(lost / written, 3) if written else 0.0,
        "shared_lost_silently": silent,
        "shared_locked_per_s": round(locked / mode.seconds, 1),
        "shared_longest_call_s": round(longest, 2),
        "actor_errors": sum(actor.errors.values()),
        "actor_resolved": len(resolved),
        "actor_uncommitted_before_stop": uncommitted,
        "rate_per_process": mode.rate,
        "save_interval_s": mode.save_interval,
    }
    yield json.dumps(figures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 s each way (under 90 s)")
    parser.add_argument("--processes", type=int, default=4, help="processes each way")
    parser.add_argument("--seconds", type=float, help="how long each way runs")
    parser.add_argument("--rate", type=float, help="shared: entity writes/s per process")
    parser.add_argument("--save-interval", type=float, help="shared: seconds between saves")
    args = parser.parse_args(argv)
    configure_logging("warning")  # to stderr: stdout is the report's
    mode = QUICK if args.quick else FULL
    mode = Mode(
        seconds=args.seconds or mode.seconds,
        rate=args.rate or mode.rate,
        save_interval=args.save_interval or mode.save_interval,
    )
    mp = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        shared = run_shared(mp, Path(tmp), mode, args.processes)
        actor = run_actor(mp, Path(tmp), mode, args.processes)
    for line in report(mode, args.processes, shared, actor):
        print(line, flush=True)


if __name__ == "__main__":
    main()
