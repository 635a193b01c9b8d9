"""Real processes for runtime tests: a broker and nodes started with ``run.py``.

Everything here starts what a user starts (``python run.py --role ...``), on the default
endpoints (ipc sockets in the test's data dir), or on tcp (free loopback ports, with or
without CURVE) when ``SWITCHBOARD_TEST_ENDPOINTS`` or a test asks for it. Their lease
(``HEARTBEAT_S`` x ``LIVENESS``, 3 s) outlasts the stalls of a process starved on a busy
machine; the tests that measure takeover and expiry ask for a short one
(``System.short_lease``) and assert against ``lease_bounds`` of it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import zmq

from protocols.broker import GetStatus, Status
from runtime import curve
from runtime.client import AsyncClient, AsyncSubscriber, Client, Subscriber
from runtime.errors import RequestError

REPO = Path(__file__).resolve().parents[2]
# The transport of every test system: "ipc" (the default endpoints, as deployed on one
# host), "tcp" (free loopback ports) or "curve" (tcp with CURVE on every link).
TRANSPORT_VARIABLE = "SWITCHBOARD_TEST_ENDPOINTS"
TRANSPORTS = ("ipc", "tcp", "curve")


def suite_transport() -> str:
    """The transport of this run's test systems (``SWITCHBOARD_TEST_ENDPOINTS``, or ipc)."""
    return os.environ.get(TRANSPORT_VARIABLE, "ipc")


# The ownership and takeover tests run on this run's transport and on tcp with CURVE.
OWNERSHIP_TRANSPORTS = sorted({suite_transport(), "curve"}, key=TRANSPORTS.index)
# The lease of every test system: 3 s. With 0.6 s, a process starved for that long (load
# average 10 on 2 cores) lost its lease and its actors stopped, failing unrelated tests.
HEARTBEAT_S = 0.5
LIVENESS = 6
# The lease of the tests that measure takeover and expiry (0.6 s), to keep them quick.
SHORT_HEARTBEAT_S = 0.2
SHORT_LIVENESS = 3
# How long a started process may take to serve before a test gives up on it: its imports
# alone take 2 s idle and over 15 s beside a CPU hog on a busy 2-core machine.
START_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` until it returns something truthy; AssertionError on timeout."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Proc:
    """A ``run.py`` process whose stderr (JSON log lines) goes to a file."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> Iterator[dict[str, object]]:
        """The JSON log lines written so far; a line still being written (no newline yet,
        a long one goes out in several writes) is left for the next call."""
        *complete, _being_written = self.log_text().split("\n")
        for line in complete:
            if line.startswith("{"):
                yield json.loads(line)

    def has_logged(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.log_events())

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class System:
    """Endpoints and settings shared by the processes of one test."""

    tmp: Path
    overrides: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    transport: str = field(default_factory=suite_transport)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"{TRANSPORT_VARIABLE}={self.transport!r}: one of {TRANSPORTS}")
        # The processes are all the broker's host's: local peers, with its key pair.
        self.curve_pair = curve.new_key_pair() if self.transport == "curve" else None
        if self.curve_pair is not None:
            self.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = self.curve_pair[1]
        if self.local:
            sockets = self.tmp / "data" / "sockets"
            self.broker = f"ipc://{sockets}/broker.sock"
            self.events_in = f"ipc://{sockets}/events-in.sock"
            self.events_out = f"ipc://{sockets}/events-out.sock"
        else:
            self.broker = f"tcp://127.0.0.1:{free_port()}"
            self.events_in = f"tcp://127.0.0.1:{free_port()}"
            self.events_out = f"tcp://127.0.0.1:{free_port()}"

    @property
    def local(self) -> bool:
        """The processes find the broker at the default endpoints (no endpoint settings)."""
        return self.transport == "ipc"

    def endpoints(self) -> dict[str, str]:
        """The endpoint settings, for a process whose data dir (and so whose default
        endpoints) is not the system's."""
        return {
            "SWITCHBOARD__RUNTIME__BROKER_ENDPOINT": self.broker,
            "SWITCHBOARD__RUNTIME__EVENTS_IN_ENDPOINT": self.events_in,
            "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT": self.events_out,
        }

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD__")}
        if not self.local:
            env.update(self.endpoints())
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
                "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS": str(LIVENESS),
                "SWITCHBOARD__LOG__FORMAT": "json",
                # Any free port for a whole system's HTTP API: tests run beside each other.
                "SWITCHBOARD__API__PORT": "0",
                **self.overrides,
            }
        )
        return env

    def curve_options(self) -> dict[str, Any]:
        """What a client of this system passes to be served over CURVE, as a local peer
        with the broker's pair (nothing when CURVE is off)."""
        if self.curve_pair is None:
            return {}
        return {"curve_server_key": self.curve_pair[0], "curve_key_pair": self.curve_pair}

    def client(self, identity: str | None = None) -> Client:
        """A client of this system's broker."""
        return Client(self.broker, identity=identity, **self.curve_options())

    def async_client(self) -> AsyncClient:
        """An asyncio client of this system's broker."""
        return AsyncClient(self.broker, **self.curve_options())

    def subscriber(self, topics: Iterable[str]) -> Subscriber:
        """A subscriber to this system's event bus."""
        return Subscriber(self.events_out, topics, **self.curve_options())

    def async_subscriber(self, topics: Iterable[str]) -> AsyncSubscriber:
        """An asyncio subscriber to this system's event bus."""
        return AsyncSubscriber(self.events_out, topics, **self.curve_options())

    def raw_dealer(self, identity: bytes, send_hwm: int = 1000) -> zmq.Socket:
        """A bare DEALER named ``identity`` on the broker, to send what no Client would."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, send_hwm)
        if self.curve_pair is not None:
            curve.dial(sock, self.curve_pair[0], self.curve_pair)
        sock.connect(self.broker)
        return sock

    def short_lease(self) -> None:
        """Give the processes started from now on the short lease (``SHORT_HEARTBEAT_S`` x
        ``SHORT_LIVENESS``), for tests that measure takeover and expiry."""
        self.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S"] = str(SHORT_HEARTBEAT_S)
        self.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS"] = str(SHORT_LIVENESS)

    def run(self, *args: str, name: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``python run.py ARGS`` in the background (``env``: extra variables)."""
        log_path = self.tmp / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), *args],
            cwd=self.tmp,
            env={**self.env(), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
        proc = Proc(popen, log_path)
        self.procs.append(proc)
        return proc

    def run_broker(self, name: str = "broker", env: dict[str, str] | None = None) -> Proc:
        """Start ``run.py --role broker`` and wait until it serves."""
        proc = self.run("--role", "broker", name=name, env=env)
        wait_until(
            lambda: proc.has_logged("broker serving") or proc.popen.poll() is not None,
            START_S,
            "the broker to bind",
        )
        assert proc.popen.poll() is None, proc.log_text()
        return proc

    def serving_node(self, node_id: str, actors: str, logged: str, *extra: str) -> Proc:
        """Start a node process hosting ``actors`` and wait until it logs ``logged``
        (the event that says its actor serves); AssertionError if it exits instead."""
        node = self.run(
            "--role", "node", "--node-id", node_id, "--actors", actors, *extra, name=node_id
        )  # fmt: skip
        wait_until(
            lambda: node.has_logged(logged) or node.popen.poll() is not None,
            START_S,
            f"{node_id} to log {logged!r}",
        )
        assert node.popen.poll() is None, node.log_text()
        return node

    def command(
        self, *args: str, timeout: float = 30.0, input: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python run.py ARGS`` to completion (status, call), ``input`` on its stdin,
        in ``cwd`` (another host's directory, say; default: the test's)."""
        return subprocess.run(
            [sys.executable, str(REPO / "run.py"), *args],
            cwd=cwd or self.tmp,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def python(self, code: str, *args: str) -> subprocess.Popen[str]:
        """Start a Python process running ``code`` with this system's environment."""
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=self.tmp,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status(self) -> Status:
        """What ``run.py status --json`` prints, decoded."""
        done = self.command("status", "--json")
        assert done.returncode == 0, done.stderr
        return msgspec.json.decode(done.stdout, type=Status)

    def owner_of(self, address: str) -> str | None:
        return next((a.node_id for a in self.status().addresses if a.address == address), None)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@dataclass(frozen=True)
class Live:
    """When one node's actor at an address may have been live (from its log records)."""

    node: str
    start: float
    stop: float


def live_intervals(
    proc: Proc, node: str, address: str, ended_at: float | None = None
) -> list[Live]:
    """The node's ``actor starting`` .. ``actor stopped`` intervals of ``address``.

    An interval still open is closed at ``ended_at`` (when the process was seen dead) or,
    for a running process, now.
    """
    intervals: list[Live] = []
    start: float | None = None
    for event in proc.log_events():
        if event.get("address") != address:
            continue
        if event.get("event") == "actor starting":
            start = float(event["at"])  # type: ignore[arg-type]
        elif event.get("event") == "actor stopped" and start is not None:
            intervals.append(Live(node, start, float(event["at"])))  # type: ignore[arg-type]
            start = None
    if start is not None:
        intervals.append(Live(node, start, ended_at if ended_at is not None else time.time()))
    return intervals


def overlapping(intervals: list[Live]) -> list[tuple[Live, Live]]:
    """Pairs of intervals, on different nodes, that overlap in time."""
    ordered = sorted(intervals, key=lambda live: live.start)
    return [
        (a, b)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if a.node != b.node and b.start < a.stop
    ]


def current_owner(client: Client, address: str) -> str | None:
    """The node the broker names as ``address``'s owner (None: none, or no answer in 1 s).

    Asked with ``client`` directly: faster than ``run.py status`` when a test polls.
    """
    try:
        status = client.request("broker", GetStatus(), timeout=1)
    except RequestError:
        return None
    assert isinstance(status, Status)
    return next((a.node_id for a in status.addresses if a.address == address), None)
