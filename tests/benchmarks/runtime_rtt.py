"""Round trips through the runtime, against raw pyzmq on the same transport, in one run.

What it measures:

* **ours**: a client process (``runtime.client.Client``) sends ``Echo`` requests over tcp
  loopback to the broker of a one-process system (``python run.py --role all --actors
  echo --accounts ""``: broker, node and echo actor in one process, node to broker over
  inproc), and waits for the ``Echoed`` replies. One request = client encode, tcp, broker decode and
  route, node thread, pykka mailbox, actor thread, inproc PUSH back to the node thread,
  broker, tcp, client decode.
* **raw**: the baseline, a DEALER client process and a ROUTER echo server process (plain
  pyzmq, frames of the same size as ours) doing the same pattern over tcp loopback.

Both at 1 request in flight (send, wait for the reply, repeat) and at 64 in flight (64
outstanding, a new one sent as each reply arrives). Measurements alternate raw, ours,
raw, ours... in rounds, because on a small shared machine the speed of hand-offs between
processes drifts: only the ratios from one run mean anything, not the absolute numbers.

With ``--curve`` and ``--ipc``, two more one-process systems are measured in the same
rounds: **curve**, the same over tcp with every link CURVE-encrypted and the client
authenticated by the broker's ZAP handler (the broker reads each message's user id), and
**ipc**, the same over the default ipc sockets. Each is reported against ours (plain
tcp): ``curve_ratio_N`` / ``ipc_ratio_N`` in the JSON line, medians of per-round ratios.

Reported: round trips/s (median of the rounds), p50 and p99 latency (all rounds'
samples pooled), CPU time per round trip of the server process and of the client
process, and the resident memory (VmRSS) of the broker+node process once ready and after
the run. The last line printed is one JSON object with these figures; ``ratio_N`` is
ours / raw, the median of the per-round ratios (each ours measurement against the raw
one just before it, so that both saw the same machine).

    python tests/benchmarks/runtime_rtt.py --quick    # under a minute
    python tests/benchmarks/runtime_rtt.py            # longer rounds, steadier numbers
    python tests/benchmarks/runtime_rtt.py --quick --curve --ipc   # the cost of security
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import zmq

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocols.codec import encode_packet, pack_body  # noqa: E402
from protocols.demo import Echo, Echoed  # noqa: E402
from protocols.envelope import Envelope, new_id  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.curve import new_key_pair  # noqa: E402
from runtime.errors import RequestError  # noqa: E402

TARGET = "echo"
BODY = Echo(text="ping")
INFLIGHT = (1, 64)
# Give up on a reply after this long (a lost reply is a bug, not a slow round trip).
REPLY_TIMEOUT_S = 10.0
# How long the system and the client processes may take to come up.
START_TIMEOUT_S = 30.0
# Celery with a Redis broker on this machine, from issue 2 (measured outside this script).
CELERY_REDIS_RT_PER_S = 570.0


@dataclass(frozen=True)
class Mode:
    """How long to measure: ``rounds`` of each (kind, in-flight) pair, each ``seconds`` long."""

    rounds: int
    seconds: float
    warmup_s: float


QUICK = Mode(rounds=12, seconds=0.5, warmup_s=0.1)
FULL = Mode(rounds=16, seconds=2.0, warmup_s=0.2)


@dataclass
class Round:
    """One measurement by one client process at one in-flight level."""

    latencies_ns: list[int]
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: float = 0.0

    @property
    def per_s(self) -> float:
        return len(self.latencies_ns) / self.elapsed_s


# -- the client processes ----------------------------------------------------------------


def pipeline(
    send: Callable[[], Hashable], receive: Callable[[], Hashable], inflight: int, seconds: float
) -> list[int]:
    """Keep ``inflight`` requests outstanding for ``seconds``, then drain; latencies in ns.

    ``send`` sends one request and returns its key; ``receive`` waits for one reply and
    returns the key of the request it answers.
    """
    clock = time.perf_counter_ns
    sent: dict[Hashable, int] = {}
    latencies: list[int] = []
    end = clock() + int(seconds * 1e9)
    for _ in range(inflight):
        start = clock()
        sent[send()] = start
    while sent:
        key = receive()
        now = clock()
        latencies.append(now - sent.pop(key))
        if now < end:
            sent[send()] = now
    return latencies


def ours_driver(
    endpoint: str, curve_pair: tuple[str, str] | None = None
) -> tuple[Callable[[], Hashable], Callable[[], Hashable]]:
    """(send, receive) over ``runtime.client.Client``, once the echo actor answers; with
    ``curve_pair`` (the broker's own pair, a key it admits), over CURVE.

    Each attempt to reach the actor uses a new client, so that a late answer to a failed
    attempt never reaches the client that measures.
    """
    give_up = time.monotonic() + START_TIMEOUT_S
    server_key = curve_pair[0] if curve_pair else None
    while True:
        client = Client(endpoint, curve_server_key=server_key, curve_key_pair=curve_pair)
        try:
            client.request(TARGET, BODY, timeout=1.0)
            break
        except RequestError:
            client.close()
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)

    def send() -> Hashable:
        return client.send(TARGET, BODY, timeout=REPLY_TIMEOUT_S)

    def receive() -> Hashable:
        reply = client.receive(REPLY_TIMEOUT_S)
        if reply is None:
            raise TimeoutError(f"no reply from {TARGET} within {REPLY_TIMEOUT_S}s")
        request_id, body = reply
        if not isinstance(body, Echoed):
            raise RuntimeError(f"unexpected reply {body!r}")
        return request_id

    return send, receive


def raw_driver(
    endpoint: str, frame_bytes: int
) -> tuple[Callable[[], Hashable], Callable[[], Hashable]]:
    """(send, receive) over a plain DEALER: a sequence number padded to ``frame_bytes``."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(REPLY_TIMEOUT_S * 1000))
    sock.connect(endpoint)
    padding = bytes(max(0, frame_bytes - 8))
    numbers = itertools.count()

    def send() -> Hashable:
        n = next(numbers)
        sock.send(n.to_bytes(8, "little") + padding)
        return n

    def receive() -> Hashable:
        return int.from_bytes(sock.recv()[:8], "little")

    send()
    receive()
    return send, receive


def client_main(
    kind: str,
    endpoint: str,
    frame_bytes: int,
    curve_pair: tuple[str, str] | None,
    conn: Connection,
) -> None:
    """A client process: says ready, then answers each (inflight, seconds) with a Round."""
    if kind != "raw":
        send, receive = ours_driver(endpoint, curve_pair)
    else:
        send, receive = raw_driver(endpoint, frame_bytes)
    conn.send("ready")
    while (command := conn.recv()) is not None:
        inflight, seconds = command
        cpu = time.process_time()
        start = time.perf_counter()
        latencies = pipeline(send, receive, inflight, seconds)
        elapsed = time.perf_counter() - start
        conn.send(Round(latencies, elapsed, time.process_time() - cpu))


def raw_server_main(conn: Connection) -> None:
    """The raw baseline's server: a ROUTER on a free loopback port echoing every message."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    conn.send(router.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        router.send_multipart(router.recv_multipart())


class ClientProcess:
    """A client process driven over a pipe: it sends a hello, then answers each command.

    ``target(*args, conn)`` runs in the child; None on the pipe tells it to stop.
    """

    def __init__(
        self,
        mp: SpawnContext,
        side: str,
        target: Callable[..., None],
        *args: Any,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.side = side
        self._conn, child = mp.Pipe()
        self._process = mp.Process(target=target, args=(*args, child), name=side, daemon=True)
        self._process.start()
        child.close()
        self.hello = self.expect(start_timeout)

    def ask(self, command: tuple[Any, ...], timeout: float) -> Any:
        """Send one command and return the child's answer."""
        self._conn.send(command)
        return self.expect(timeout)

    def measure(self, inflight: int, seconds: float) -> Round:
        """One measurement round of ``client_main``."""
        result = self.ask((inflight, seconds), seconds + REPLY_TIMEOUT_S + 5)
        assert isinstance(result, Round)
        return result

    def expect(self, timeout: float) -> Any:
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except EOFError:
            pass
        raise RuntimeError(f"the {self.side} client process failed (see its output above)")

    def close(self) -> None:
        with suppress(OSError):
            self._conn.send(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()


# -- the server processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def one_process_system(
    workdir: str | Path,
    actors: str = "echo",
    settings: dict[str, str] | None = None,
    *,
    ipc: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python run.py --role all --actors ACTORS`` on free loopback ports (with ``ipc``,
    the default ipc sockets in ``workdir``'s data dir): (process, endpoint).

    No accounts (``--accounts ""``), so the process hosts the broker, the node and
    ``actors`` only, not the sandbox demo; ``settings`` are extra environment overrides
    (``SWITCHBOARD__…``). Runs in ``workdir`` (so no ``switchboard.toml`` is
    picked up) with warning-level logs going to ``workdir/system.log``, which is printed if
    the system exits early.
    """
    if ipc:
        sockets = Path(workdir).absolute() / "data" / "sockets"
        endpoint, events_in, events_out = (
            f"ipc://{sockets}/{name}.sock" for name in ("broker", "events-in", "events-out")
        )
    else:
        endpoint, events_in, events_out = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    env = {
        **os.environ,
        "SWITCHBOARD__RUNTIME__BROKER_ENDPOINT": endpoint,
        "SWITCHBOARD__RUNTIME__EVENTS_IN_ENDPOINT": events_in,
        "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT": events_out,
        "SWITCHBOARD__LOG__LEVEL": "warning",
        **(settings or {}),
    }
    log_path = Path(workdir) / "system.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run.py"),
                "--role",
                "all",
                "--actors",
                actors,
                "--accounts",
                "",
            ],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, endpoint
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        elif process.returncode:
            print(log_path.read_text(errors="replace"), file=sys.stderr)


@contextmanager
def raw_echo_server(mp: SpawnContext) -> Iterator[tuple[int, str]]:
    """The raw ROUTER echo server process: (pid, endpoint)."""
    conn, child = mp.Pipe()
    process = mp.Process(target=raw_server_main, args=(child,), name="raw-server", daemon=True)
    process.start()
    child.close()
    try:
        if not conn.poll(START_TIMEOUT_S):
            raise RuntimeError("the raw echo server did not start")
        assert process.pid is not None
        yield process.pid, f"tcp://127.0.0.1:{conn.recv()}"
    finally:
        process.terminate()
        process.join(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of process ``pid``, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


@dataclass(frozen=True)
class Memory:
    """The broker+node process's resident memory in MiB: once ready, after the run, peak."""

    idle_mb: float
    after_mb: float
    peak_mb: float


# -- the run -----------------------------------------------------------------------------


def request_frame_bytes() -> int:
    """The size of one of our request frames, so that raw sends frames of the same size."""
    envelope = Envelope(
        id=new_id(),
        sender=f"client:{'0' * 16}",
        target=TARGET,
        body=pack_body(BODY),
        deadline=time.time(),
    )
    return len(encode_packet(envelope))


def measure_all(
    mode: Mode, variants: tuple[str, ...] = ()
) -> tuple[dict[tuple[str, int], list[Round]], Memory]:
    """Run every round: {(kind, inflight): rounds}, and the system process's memory.

    ``variants``: "curve" and/or "ipc", measured beside ours (see the module's doc).
    """
    mp = multiprocessing.get_context("spawn")
    frame_bytes = request_frame_bytes()
    kinds = ("raw", "ours", *variants)
    results: dict[tuple[str, int], list[Round]] = {(k, n): [] for k in kinds for n in INFLIGHT}
    public, secret = new_key_pair()
    with contextlib.ExitStack() as stack:
        workdirs = {k: stack.enter_context(tempfile.TemporaryDirectory()) for k in kinds}
        raw_pid, raw_endpoint = stack.enter_context(raw_echo_server(mp))
        clients = [
            (ClientProcess(mp, "raw", client_main, "raw", raw_endpoint, frame_bytes, None), raw_pid)
        ]
        for kind in kinds[1:]:
            settings = {"SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY": secret} if kind == "curve" else {}
            system, endpoint = stack.enter_context(
                one_process_system(workdirs[kind], settings=settings, ipc=kind == "ipc")
            )
            pair = (public, secret) if kind == "curve" else None
            client = ClientProcess(mp, kind, client_main, kind, endpoint, frame_bytes, pair)
            clients.append((client, system.pid))
        system_pid = clients[1][1]
        idle = memory_mb(system_pid)["VmRSS"]
        try:
            for _ in range(mode.rounds):
                for n in INFLIGHT:
                    for client, server_pid in clients:
                        client.measure(n, mode.warmup_s)
                        cpu = cpu_seconds(server_pid)
                        sample = client.measure(n, mode.seconds)
                        sample.server_cpu_s = cpu_seconds(server_pid) - cpu
                        results[client.side, n].append(sample)
        finally:
            for client, _ in clients:
                client.close()
        after = memory_mb(system_pid)
    return results, Memory(idle, after["VmRSS"], after["VmHWM"])


@dataclass(frozen=True)
class Summary:
    """One (kind, inflight) pair over all its rounds."""

    per_s: float
    per_s_rounds: list[float]
    p50_us: float
    p99_us: float
    server_cpu_us: float
    client_cpu_us: float

    @classmethod
    def of(cls, rounds: list[Round]) -> Summary:
        latencies = sorted(itertools.chain.from_iterable(r.latencies_ns for r in rounds))
        count = len(latencies)
        per_s_rounds = [r.per_s for r in rounds]
        return cls(
            per_s=statistics.median(per_s_rounds),
            per_s_rounds=per_s_rounds,
            p50_us=latencies[int(0.50 * (count - 1))] / 1000,
            p99_us=latencies[int(0.99 * (count - 1))] / 1000,
            server_cpu_us=sum(r.server_cpu_s for r in rounds) / count * 1e6,
            client_cpu_us=sum(r.client_cpu_s for r in rounds) / count * 1e6,
        )


def report(mode: Mode, results: dict[tuple[str, int], list[Round]], memory: Memory) -> str:
    """The readable table followed by the JSON line."""
    rows = [
        "Round trips: client process -> broker -> echo actor (node) -> client, tcp loopback;",
        "raw = pyzmq DEALER -> ROUTER echo process -> DEALER on the same transport.",
        f"{mode.rounds} rounds x {mode.seconds:g} s per measurement, raw and ours alternating; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        "",
        f"{'':30}{'ours':>12}{'raw':>12}{'ours/raw':>10}",
        "(round trips/s: median of the rounds; ours/raw: median of the per-round ratios)",
    ]
    figures: dict[str, float | int] = {}
    for n in INFLIGHT:
        ours, raw = Summary.of(results["ours", n]), Summary.of(results["raw", n])
        ratios = [
            o.per_s / r.per_s for o, r in zip(results["ours", n], results["raw", n], strict=True)
        ]
        ratio = statistics.median(ratios)
        rows += [
            f"{n} in flight",
            f"  {'round trips/s':28}{ours.per_s:>12,.0f}{raw.per_s:>12,.0f}{ratio:>10.2f}",
            f"  {'p50 latency (us)':28}{ours.p50_us:>12.0f}{raw.p50_us:>12.0f}"
            f"{ours.p50_us / raw.p50_us:>10.2f}",
            f"  {'p99 latency (us)':28}{ours.p99_us:>12.0f}{raw.p99_us:>12.0f}"
            f"{ours.p99_us / raw.p99_us:>10.2f}",
            f"  {'server CPU per rt (us)':28}{ours.server_cpu_us:>12.1f}{raw.server_cpu_us:>12.1f}"
            f"{ours.server_cpu_us / raw.server_cpu_us:>10.2f}",
            f"  {'client CPU per rt (us)':28}{ours.client_cpu_us:>12.1f}{raw.client_cpu_us:>12.1f}"
            f"{ours.client_cpu_us / raw.client_cpu_us:>10.2f}",
            f"  per round, ours k rt/s:  {' '.join(f'{v / 1000:5.1f}' for v in ours.per_s_rounds)}",
            f"  per round, raw k rt/s:   {' '.join(f'{v / 1000:5.1f}' for v in raw.per_s_rounds)}",
            f"  per round, ours/raw:     {' '.join(f'{v:5.2f}' for v in ratios)}",
        ]
        figures |= {
            f"rtt_per_s_{n}": round(ours.per_s),
            f"p50_us_{n}": round(ours.p50_us, 1),
            f"p99_us_{n}": round(ours.p99_us, 1),
            f"raw_per_s_{n}": round(raw.per_s),
            f"raw_p50_us_{n}": round(raw.p50_us, 1),
            f"raw_p99_us_{n}": round(raw.p99_us, 1),
            f"ratio_{n}": round(ratio, 3),
            f"server_cpu_us_{n}": round(ours.server_cpu_us, 1),
            f"raw_server_cpu_us_{n}": round(raw.server_cpu_us, 1),
        }
        for kind in ("curve", "ipc"):
            if (kind, n) not in results:
                continue
            other = Summary.of(results[kind, n])
            kind_ratio = statistics.median(
                k.per_s / o.per_s for k, o in zip(results[kind, n], results["ours", n], strict=True)
            )
            rows += [
                f"  {kind + ' round trips/s':28}{other.per_s:>12,.0f}"
                f"  {kind}/ours (plain tcp) {kind_ratio:.2f}; p50 {other.p50_us:.0f} us, "
                f"p99 {other.p99_us:.0f} us",
            ]
            figures |= {
                f"{kind}_per_s_{n}": round(other.per_s),
                f"{kind}_p50_us_{n}": round(other.p50_us, 1),
                f"{kind}_ratio_{n}": round(kind_ratio, 3),
            }
    figures |= {
        "rss_mb_node": round(memory.after_mb, 1),
        "rss_mb_node_idle": round(memory.idle_mb, 1),
        "peak_rss_mb_node": round(memory.peak_mb, 1),
        "rounds": mode.rounds,
        "seconds_per_measurement": mode.seconds,
    }
    rows += [
        "",
        f"broker+node process VmRSS: {memory.idle_mb:.1f} MiB when ready, "
        f"{memory.after_mb:.1f} MiB after the run (peak {memory.peak_mb:.1f} MiB)",
        f"vs Celery+Redis reference ({CELERY_REDIS_RT_PER_S:.0f} rt/s, issue 2): "
        f"{figures['rtt_per_s_1'] / CELERY_REDIS_RT_PER_S:.1f}x at 1 in flight",
        json.dumps(figures),
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under a minute)")
    parser.add_argument("--rounds", type=int, help="rounds per (kind, in-flight) pair")
    parser.add_argument("--seconds", type=float, help="length of one measurement")
    parser.add_argument("--curve", action="store_true", help="also measure tcp with CURVE")
    parser.add_argument("--ipc", action="store_true", help="also measure the ipc default")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    mode = Mode(
        rounds=args.rounds or mode.rounds,
        seconds=args.seconds or mode.seconds,
        warmup_s=mode.warmup_s,
    )
    variants = tuple(k for k in ("curve", "ipc") if getattr(args, k))
    results, memory = measure_all(mode, variants)
    print(report(mode, results, memory), flush=True)


if __name__ == "__main__":
    main()
