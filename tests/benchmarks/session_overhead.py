"""FetchHistory through the runtime from another process, against plain Telethon, in one run.

What it measures, against one sandbox running in a process of its own:

* **actor**: a client process (``runtime.client.Client``) sends ``FetchHistory(peer=<channel
  id>, limit=20)`` to ``session:bench`` over tcp loopback: client -> broker process
  (``run.py --role broker``) -> node process (``run.py --role node --accounts bench``) ->
  node thread -> mailbox thread -> asyncio loop thread -> the actor's Telethon client ->
  sandbox, and the typed ``History`` back the same way.
* **direct**: an unmodified Telethon client in a process of its own, logged in as the same
  user (its own authorization, in its own ``*.session`` file as a script has), calling
  ``client.get_messages(channel, limit=20)`` (messages.getHistory) on the same channel.

Both at 1 call in flight (call, wait, repeat: the headline figures) and at 8 in flight
(8 outstanding: Telethon pipelines them on its one connection; the runtime client keeps 8
requests queued for the actor). Two more measurements say where the actor path's time
goes: **direct entity+history**, the calls the actor makes for one FetchHistory (it turns
the peer into an entity with ``get_entity`` first, which costs channels.getChannels) made
directly; and **actor status**, a ``GetSessionStatus`` round trip (every runtime hop to
the actor's asyncio loop and back, no Telegram call). The Telethon-to-typed conversion and
encoding of a reply is timed in the direct client's process.

Measurements alternate direct, actor, direct, actor... in rounds, because on a small
shared machine speeds drift: only the ratios from one run mean anything. The account's
proactive rate limits (a user account's default for history is 5 calls/s) are raised in
its config: they are policy, and this measures the mechanism.

On loopback a getHistory takes under a millisecond, so the fixed cost of two more process
hops weighs far more than it would against Telegram, tens of milliseconds away:
``--latency-ms N`` makes the sandbox hold every Telegram request N ms (both sides alike)
to show the same comparison at a production-like round trip.

Reported: calls/s (median of the rounds), p50 and p99 latency (all rounds' samples
pooled), CPU time per call of every process involved. The last line printed is one JSON
object: ``direct_per_s``, ``actor_per_s``, ``overhead_ratio`` (direct/actor), ``p99_us``
(the actor path's), ``direct_p50_us``, ``actor_p50_us`` and the rest of the figures.

    python tests/benchmarks/session_overhead.py --quick    # under a minute
    python tests/benchmarks/session_overhead.py            # longer rounds, steadier numbers
    python tests/benchmarks/session_overhead.py --quick --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from actors import convert  # noqa: E402
from actors.session import open_session_file  # noqa: E402
from protocols import session as s  # noqa: E402
from protocols.base import Message  # noqa: E402
from protocols.codec import pack_body  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.errors import RequestError  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from sandbox import SandboxThread  # noqa: E402
from sandbox.client import new_client  # noqa: E402
from tests.benchmarks.runtime_rtt import ClientProcess, cpu_seconds, pipeline  # noqa: E402
from tests.runtime.support import Proc, System, wait_until  # noqa: E402

ACCOUNT = "bench"
ADDRESS = f"session:{ACCOUNT}"
PHONE = "+15550002001"
CHANNEL = "overhead_bench"
POSTS = 100
LIMIT = 20
INFLIGHT = (1, 8)
# Give up on a reply after this long (a lost reply is a bug, not a slow call).
REPLY_TIMEOUT_S = 10.0
# How long processes may take to come up (the sandbox makes its RSA key in pure Python).
START_TIMEOUT_S = 60.0
# Proactive limits high enough never to hold a request back: the benchmarks measure the
# mechanism, and the sandbox imposes no flood waits.
UNLIMITED = {"rate_per_s": 1e6, "burst": 1_000_000}
# Conversions of one reply timed for the conversion cost (a few ms in all).
CONVERSIONS = 200


@dataclass(frozen=True)
class Mode:
    """How long to measure: ``rounds`` of each kind of measurement, ``seconds`` each."""

    rounds: int
    seconds: float
    warmup_s: float
    latency_s: float = 0.0  # added by the sandbox to every Telegram request


QUICK = Mode(rounds=3, seconds=1.2, warmup_s=0.2)
FULL = Mode(rounds=6, seconds=5.0, warmup_s=0.5)


@dataclass(frozen=True)
class Kind:
    """One kind of measurement: which client process, what call, how many in flight."""

    side: str  # "direct" or "actor": the client process that makes the calls
    call: str  # "history", "entity+history" (direct) or "status" (actor)
    inflight: int

    @property
    def label(self) -> str:
        return f"{self.side} {self.call} x{self.inflight}"


# In this order in every round: the headline pair at each in-flight level next to each
# other, then the two measurements that explain the difference.
KINDS = (
    Kind("direct", "history", 1),
    Kind("actor", "history", 1),
    Kind("direct", "history", 8),
    Kind("actor", "history", 8),
    Kind("direct", "entity+history", 1),
    Kind("actor", "status", 1),
)


@dataclass
class Round:
    """One measurement by one client process; ``server_cpu_s`` by process name, ``rpcs``
    the Telegram requests the sandbox answered meanwhile, by method."""

    latencies_ns: list[int]
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    rpcs: dict[str, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return len(self.latencies_ns) / self.elapsed_s


# -- the sandbox process -----------------------------------------------------------------


@dataclass(frozen=True)
class SandboxInfo:
    """Where a sandbox listens and its public key: what a client needs to reach it."""

    host: str
    port: int
    public_key_pem: str


def sandbox_main(conn: Connection) -> None:
    """The sandbox process: serves MTProto, and runs control operations sent over ``conn``.

    Each request is ``(operation, [kwargs, ...])`` and is answered with the list of
    results, or with ``("error", text)`` if an operation raised.
    """
    configure_logging("warning")  # to stderr: stdout is the report's
    with SandboxThread().start() as sandbox:
        conn.send(SandboxInfo(sandbox.host, sandbox.port, sandbox.public_key_pem))
        while (request := conn.recv()) is not None:
            operation, calls = request
            try:
                conn.send([getattr(sandbox.control, operation)(**kw) for kw in calls])
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


class SandboxProcess:
    """A sandbox in a process of its own (no GIL shared with the sides being measured)."""

    def __init__(self, mp: SpawnContext) -> None:
        self._conn, child = mp.Pipe()
        self._process = mp.Process(target=sandbox_main, args=(child,), name="sandbox")
        self._process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("the sandbox process did not start")
        self.info: SandboxInfo = self._conn.recv()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def call_many(self, operation: str, calls: list[dict[str, Any]]) -> list[Any]:
        """Run a control operation once per kwargs in ``calls``; their results in order."""
        self._conn.send((operation, calls))
        results = self._conn.recv()
        if isinstance(results, tuple):
            raise RuntimeError(f"sandbox {operation}: {results[1]}")
        return results

    def call(self, operation: str, **kwargs: Any) -> Any:
        """Run one control operation (``sandbox.control.Control``) and return its result."""
        return self.call_many(operation, [kwargs])[0]

    def stop(self) -> None:
        with suppress(OSError):
            self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


@contextmanager
def sandbox_process(mp: SpawnContext) -> Iterator[SandboxProcess]:
    sandbox = SandboxProcess(mp)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def log_in(sandbox: SandboxProcess, path: Path) -> None:
    """A new authorization of ``PHONE`` in the session file ``path``, made the way a user
    makes one: a plain Telethon login into ``*.session`` (created 0600, as the actor
    creates them)."""

    async def run() -> None:
        client = new_client(sandbox.info, open_session_file(path))
        # Telethon prints its greeting; stdout is the report's.
        with redirect_stdout(sys.stderr):
            await client.start(
                phone=PHONE, code_callback=lambda: sandbox.call("last_login_code", phone=PHONE)
            )
        await client.disconnect()
        client.session.close()

    asyncio.run(run())


# -- our system: broker and node processes -----------------------------------------------


@dataclass
class Deployment:
    """The broker and the node hosting ``session:bench``, as ``run.py`` processes."""

    system: System
    broker: Proc
    node: Proc
    session_file: Path

    @property
    def endpoint(self) -> str:
        return self.system.broker


def write_config(
    workdir: Path, sandbox: SandboxProcess, session_file: Path, limits: tuple[str, ...]
) -> None:
    """``switchboard.toml``: the account on the sandbox, with ``limits`` classes unlimited."""
    key_file = workdir / "sandbox.pem"
    key_file.write_text(sandbox.info.public_key_pem)
    lines = [
        f'data_dir = "{workdir / "data"}"',
        f"[accounts.{ACCOUNT}]",
        'kind = "user"',
        f'phone = "{PHONE}"',
        f'session_file = "{session_file}"',
    ]
    for method_class in limits:
        lines += [
            f"[accounts.{ACCOUNT}.limits.{method_class}]",
            f"rate_per_s = {UNLIMITED['rate_per_s']:.1f}",
            f"burst = {UNLIMITED['burst']}",
        ]
    lines += [
        f"[accounts.{ACCOUNT}.server]",
        f'host = "{sandbox.info.host}"',
        f"port = {sandbox.info.port}",
        f'public_key_file = "{key_file}"',
    ]
    (workdir / "switchboard.toml").write_text("\n".join(lines) + "\n")


@contextmanager
def deployment(
    workdir: Path, sandbox: SandboxProcess, limits: tuple[str, ...]
) -> Iterator[Deployment]:
    """Broker and node processes serving ``session:bench`` once it is authorized.

    Logs (JSON, info level) go to ``workdir/broker.log`` and ``workdir/node.log``.
    """
    session_file = workdir / "data" / "sessions" / f"{ACCOUNT}.session"
    log_in(sandbox, session_file)
    write_config(workdir, sandbox, session_file, limits)
    # Production heartbeats (the test support's are five times faster).
    system = System(
        workdir,
        overrides={
            "SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S": "1.0",
            "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS": "3",
        },
    )
    try:
        broker = system.run("--role", "broker", name="broker")
        wait_until(lambda: broker.has_logged("broker serving"), START_TIMEOUT_S, "the broker")
        node = system.run(
            "--role", "node", "--node-id", "n1", "--actors", "", "--accounts", ACCOUNT, name="node"
        )
        with system.client() as client:
            wait_until(lambda: authorized(client), START_TIMEOUT_S, f"{ADDRESS} to log in")
        yield Deployment(system, broker, node, session_file)
    finally:
        system.stop_all()


def authorized(client: Client) -> bool:
    try:
        status = client.request(ADDRESS, s.GetSessionStatus(), timeout=1.0)
    except RequestError:
        return False
    return isinstance(status, s.SessionStatus) and status.state == "authorized"


# -- the client processes ----------------------------------------------------------------


async def keep_busy(
    call: Callable[[], Awaitable[object]], inflight: int, seconds: float
) -> list[int]:
    """Keep ``inflight`` calls outstanding for ``seconds``; latencies in ns."""
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    latencies: list[int] = []

    async def one_at_a_time() -> None:
        while (start := clock()) < end:
            await call()
            latencies.append(clock() - start)

    await asyncio.gather(*(one_at_a_time() for _ in range(inflight)))
    return latencies


async def direct_client(info: SandboxInfo, session_file: str, conn: Connection) -> None:
    """The direct side: answers ``(call, inflight, seconds)`` with a Round, ``("convert",
    n)`` with the seconds one conversion of a History reply takes, None to stop."""
    # Its own session file, as a script has: Telethon stores entities in it as it goes.
    client = new_client(info, session_file)
    await client.connect()
    loop = asyncio.get_running_loop()
    try:
        # Resolved once, as any script does; the calls below then use the cached peer.
        peer = await client.get_input_entity(CHANNEL)
        channel = await client.get_entity(peer)
        channel_id = convert.peer(channel).id

        async def history() -> object:
            return await client.get_messages(peer, limit=LIMIT)

        async def entity_history() -> object:
            # What the session actor does for FetchHistory(peer=<id>).
            entity = await client.get_entity(channel_id)
            return await client.get_messages(entity, limit=LIMIT)

        calls = {"history": history, "entity+history": entity_history}
        conn.send(channel_id)
        while (command := await loop.run_in_executor(None, conn.recv)) is not None:
            if command[0] == "convert":
                messages = await history()
                start = time.perf_counter()
                for _ in range(command[1]):
                    reply = s.History(
                        peer=convert.peer(channel),
                        messages=[convert.message(m) for m in messages],
                    )
                    pack_body(reply)
                conn.send((time.perf_counter() - start) / command[1])
                continue
            call, inflight, seconds = command
            cpu = time.process_time()
            start = time.perf_counter()
            latencies = await keep_busy(calls[call], inflight, seconds)
            elapsed = time.perf_counter() - start
            conn.send(Round(latencies, elapsed, time.process_time() - cpu))
    finally:
        await client.disconnect()


def direct_main(info: SandboxInfo, session_file: str, conn: Connection) -> None:
    asyncio.run(direct_client(info, session_file, conn))


def actor_main(endpoint: str, channel_id: int, conn: Connection) -> None:
    """The actor side: answers ``(call, inflight, seconds)`` with a Round, None to stop."""
    client = Client(endpoint)
    bodies = {
        "history": s.FetchHistory(peer=channel_id, limit=LIMIT),
        "status": s.GetSessionStatus(),
    }
    expected = {"history": s.History, "status": s.SessionStatus}
    # A new session knows no entities: resolved once by username, as any program starts,
    # so the actor has the channel cached and FetchHistory can name it by id.
    client.request(ADDRESS, s.ResolvePeer(peer=CHANNEL), timeout=REPLY_TIMEOUT_S)
    conn.send("ready")
    while (command := conn.recv()) is not None:
        call, inflight, seconds = command
        body, reply_type = bodies[call], expected[call]

        def send(body: Message = body) -> Hashable:
            return client.send(ADDRESS, body, timeout=REPLY_TIMEOUT_S)

        def receive(reply_type: type = reply_type) -> Hashable:
            reply = client.receive(REPLY_TIMEOUT_S)
            if reply is None:
                raise TimeoutError(f"no reply from {ADDRESS} within {REPLY_TIMEOUT_S}s")
            request_id, answer = reply
            if not isinstance(answer, reply_type):
                raise RuntimeError(f"unexpected reply {answer!r}")
            return request_id

        cpu = time.process_time()
        start = time.perf_counter()
        latencies = pipeline(send, receive, inflight, seconds)
        elapsed = time.perf_counter() - start
        conn.send(Round(latencies, elapsed, time.process_time() - cpu))


# -- the run -----------------------------------------------------------------------------


@dataclass
class Results:
    rounds: dict[Kind, list[Round]]
    convert_s: float


def prepare_world(sandbox: SandboxProcess) -> None:
    """The user, and a public channel with ``POSTS`` posts."""
    sandbox.call("create_user", phone=PHONE, first_name="Bench")
    sandbox.call("create_channel", title="Overhead bench", username=CHANNEL)
    sandbox.call_many("post", [{"channel": CHANNEL, "text": f"post {i}"} for i in range(POSTS)])


def measure_all(mode: Mode) -> Results:
    mp = multiprocessing.get_context("spawn")
    results: dict[Kind, list[Round]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(mp) as sandbox:
        prepare_world(sandbox)
        direct_session = Path(tmp) / "direct.session"
        log_in(sandbox, direct_session)
        with deployment(Path(tmp), sandbox, limits=("history",)) as system:
            pids = {"sandbox": sandbox.pid, "broker": system.broker.pid, "node": system.node.pid}
            direct = ClientProcess(
                mp,
                "direct",
                direct_main,
                sandbox.info,
                str(direct_session),
                start_timeout=START_TIMEOUT_S,
            )
            actor = ClientProcess(
                mp,
                "actor",
                actor_main,
                system.endpoint,
                direct.hello,
                start_timeout=START_TIMEOUT_S,
            )
            clients = {"direct": direct, "actor": actor}
            if mode.latency_s:
                # Telegram's round trip, for both sides alike, from here on (so not in the
                # logins and the start-up above).
                sandbox.call("delay", method=None, seconds=mode.latency_s)
            try:
                budget = mode.seconds + REPLY_TIMEOUT_S + 5
                for _ in range(mode.rounds):
                    for kind in KINDS:
                        client = clients[kind.side]
                        client.ask((kind.call, kind.inflight, mode.warmup_s), budget)
                        cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
                        rpcs = sandbox.call("calls")
                        sample = client.ask((kind.call, kind.inflight, mode.seconds), budget)
                        sample.server_cpu_s = {
                            name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()
                        }
                        after = sandbox.call("calls")
                        sample.rpcs = {m: n - rpcs.get(m, 0) for m, n in after.items()}
                        results[kind].append(sample)
                convert_s = direct.ask(("convert", CONVERSIONS), budget)
            finally:
                for client in clients.values():
                    client.close()
    return Results(results, convert_s)


@dataclass(frozen=True)
class Summary:
    """One kind of measurement over all its rounds.

    ``cpu_us`` is CPU time per call by process; ``rpcs`` Telegram requests per call by
    method, as the sandbox counted them.
    """

    per_s: float
    per_s_rounds: list[float]
    p10_us: float
    p50_us: float
    p99_us: float
    cpu_us: dict[str, float]
    rpcs: dict[str, float]

    @classmethod
    def of(cls, kind: Kind, rounds: list[Round]) -> Summary:
        latencies = sorted(itertools.chain.from_iterable(r.latencies_ns for r in rounds))
        count = len(latencies)
        per_s_rounds = [r.per_s for r in rounds]
        # Only the processes on this side's path: the other side's client idles meanwhile.
        path = ("sandbox",) if kind.side == "direct" else ("broker", "node", "sandbox")
        cpu = {"client": sum(r.client_cpu_s for r in rounds) / count * 1e6}
        cpu |= {name: sum(r.server_cpu_s[name] for r in rounds) / count * 1e6 for name in path}
        rpcs = {
            method: sum(r.rpcs.get(method, 0) for r in rounds) / count
            for method in sorted({m for r in rounds for m, n in r.rpcs.items() if n})
        }
        return cls(
            per_s=statistics.median(per_s_rounds),
            per_s_rounds=per_s_rounds,
            p10_us=latencies[int(0.10 * (count - 1))] / 1000,
            p50_us=latencies[int(0.50 * (count - 1))] / 1000,
            p99_us=latencies[int(0.99 * (count - 1))] / 1000,
            cpu_us=cpu,
            rpcs=rpcs,
        )

    @property
    def total_cpu_us(self) -> float:
        return sum(self.cpu_us.values())

    def describe(self) -> str:
        """CPU per call by process and Telegram requests per call, on one line."""
        cpu = " ".join(f"{name} {us:.0f}" for name, us in self.cpu_us.items())
        rpcs = " + ".join(f"{n:.2f} {method}" for method, n in self.rpcs.items()) or "none"
        return f"CPU us: {cpu}; requests: {rpcs}"


def row(label: str, direct: float, actor: float, ratio: float, unit: str = ".0f") -> str:
    return f"  {label:32}{direct:>10,{unit}}{actor:>10,{unit}}{ratio:>14.2f}"


def report(mode: Mode, results: Results) -> str:
    """The readable table followed by the JSON line."""
    summary = {kind: Summary.of(kind, rounds) for kind, rounds in results.rounds.items()}

    def of(side: str, call: str, inflight: int = 1) -> Summary:
        return summary[Kind(side, call, inflight)]

    rows = [
        f"FetchHistory(limit={LIMIT}) on a {POSTS}-post channel: client process -> broker ->",
        "node (session actor) -> sandbox, against Telethon's get_messages in a process of its",
        "own; the sandbox in a third process.",
        f"{mode.rounds} rounds x {mode.seconds:g} s per measurement, alternating; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        f"Latency added by the sandbox to every Telegram request: {mode.latency_s * 1e3:g} ms",
        "",
        f"{'':34}{'direct':>10}{'actor':>10}{'direct/actor':>14}",
    ]
    figures: dict[str, float | int] = {}
    for n in INFLIGHT:
        direct, actor = of("direct", "history", n), of("actor", "history", n)
        ratio = direct.per_s / actor.per_s
        rows += [
            f"{n} in flight",
            row("calls/s", direct.per_s, actor.per_s, ratio),
            row("p10 latency (us)", direct.p10_us, actor.p10_us, direct.p10_us / actor.p10_us),
            row("p50 latency (us)", direct.p50_us, actor.p50_us, direct.p50_us / actor.p50_us),
            row("p99 latency (us)", direct.p99_us, actor.p99_us, direct.p99_us / actor.p99_us),
            row(
                "CPU per call, all procs (us)",
                direct.total_cpu_us,
                actor.total_cpu_us,
                direct.total_cpu_us / actor.total_cpu_us,
            ),
            f"  rounds, direct calls/s: {' '.join(f'{v:,.0f}' for v in direct.per_s_rounds)}",
            f"  rounds, actor calls/s:  {' '.join(f'{v:,.0f}' for v in actor.per_s_rounds)}",
            f"  direct {direct.describe()}",
            f"  actor  {actor.describe()}",
        ]
        suffix = "" if n == 1 else f"_{n}"
        figures |= {
            f"direct_per_s{suffix}": round(direct.per_s, 1),
            f"actor_per_s{suffix}": round(actor.per_s, 1),
            f"overhead_ratio{suffix}": round(ratio, 3),
            f"p99_us{suffix}": round(actor.p99_us),
            f"direct_p50_us{suffix}": round(direct.p50_us),
            f"actor_p50_us{suffix}": round(actor.p50_us),
            f"direct_p99_us{suffix}": round(direct.p99_us),
            f"direct_cpu_us{suffix}": round(direct.total_cpu_us),
            f"actor_cpu_us{suffix}": round(actor.total_cpu_us),
        }

    direct, actor = of("direct", "history"), of("actor", "history")
    both, status = of("direct", "entity+history"), of("actor", "status")
    convert_us = results.convert_s * 1e6

    def parts(p: str) -> list[float]:
        d, e, st, a = (getattr(x, f"{p}_us") for x in (direct, both, status, actor))
        return [d, e - d, st, convert_us, a - e - st - convert_us, a]

    steps = [
        "direct getHistory",
        "+ the actor's get_entity(id): channels.getChannels",
        "+ runtime round trip to the actor (GetSessionStatus)",
        "+ Telethon -> typed History, encoded (in-process)",
        "+ the rest (node threads hand-offs, GIL, scheduling)",
        "= actor FetchHistory",
    ]
    rows += [
        "",
        "Where the actor path's time goes, 1 in flight (us):",
        f"  {'':54}{'at p10':>9}{'at p50':>9}",
        *(
            f"  {step:54}{p10:>+9.0f}{p50:>+9.0f}"
            for step, p10, p50 in zip(steps, parts("p10"), parts("p50"), strict=True)
        ),
        f"  direct get_entity+getHistory: {both.describe()}",
        f"  actor GetSessionStatus:       {status.describe()}",
    ]
    figures |= {
        "entity_history_p50_us": round(both.p50_us),
        "entity_history_per_s": round(both.per_s, 1),
        "status_p50_us": round(status.p50_us),
        "status_per_s": round(status.per_s, 1),
        "convert_us": round(convert_us, 1),
        "node_cpu_us": round(actor.cpu_us["node"]),
        "broker_cpu_us": round(actor.cpu_us["broker"]),
        "direct_client_cpu_us": round(direct.cpu_us["client"]),
        "actor_rpcs_per_call": round(sum(actor.rpcs.values()), 2),
        "direct_rpcs_per_call": round(sum(direct.rpcs.values()), 2),
        "limit": LIMIT,
        "latency_ms": mode.latency_s * 1e3,
        "rounds": mode.rounds,
        "seconds_per_measurement": mode.seconds,
    }
    rows.append(json.dumps(figures))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under a minute)")
    parser.add_argument("--rounds", type=int, help="rounds of each kind of measurement")
    parser.add_argument("--seconds", type=float, help="length of one measurement")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay the sandbox adds to every Telegram request (Telegram's round trip)",
    )
    args = parser.parse_args(argv)
    configure_logging("warning")  # to stderr: stdout is the report's
    mode = QUICK if args.quick else FULL
    mode = Mode(
        rounds=args.rounds or mode.rounds,
        seconds=args.seconds or mode.seconds,
        warmup_s=mode.warmup_s,
        latency_s=args.latency_ms / 1e3,
    )
    print(report(mode, measure_all(mode)), flush=True)


if __name__ == "__main__":
    main()
