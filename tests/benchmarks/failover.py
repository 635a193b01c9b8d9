"""Benchmark: how long ownership takes to move after a node dies, and to come back after
the broker dies, next to the bounds the README states; and whether two owners overlapped.

Real processes (``run.py --role broker`` and two ``--role node --actors echo`` nodes, one
of them ``--standby``) on loopback, with a 3 s lease (``I`` = 0.5 s, ``L`` = 6):

* node death: ``kill -9`` of the owner, time until the broker names the standby as owner
  (the killed node then comes back as the new standby);
* broker death: ``kill -9`` of the broker and a new one started at once, time until the
  owner has its address back (from the kill, and from the new broker serving); whether
  the address moved (it must not) and whether the owner had to stop its actor.

Every node logs when its actor may be live; ``overlaps`` counts pairs of such intervals
on different nodes that overlap (must be 0). ``--quick`` runs 3 node deaths and 5 broker
deaths (under a minute). The last line is one JSON object with ``node_takeover_s_max``,
``broker_recovery_s_max``, ``overlaps`` and ``ownership_moves_on_broker_restart``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.broker import lease_bounds
from runtime.client import Client
from tests.runtime.support import Proc, System, current_owner, live_intervals, overlapping

INTERVAL_S = 0.5
LIVENESS = 6
LEASE_S, EXPIRY_S = lease_bounds(INTERVAL_S, LIVENESS)
ADDRESS = "echo"
TIMING = {
    "SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S": str(INTERVAL_S),
    "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS": str(LIVENESS),
}


def wait_for(predicate: object, timeout: float = 60.0) -> float:
    """Poll ``predicate`` every 10 ms; the time.monotonic() at which it held."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"gave up after {timeout}s")


class World:
    """The broker and the two nodes, with every process kept for its log."""

    def __init__(self, tmp: Path) -> None:
        self.system = System(tmp)
        self.system.overrides.update(TIMING)
        self.broker_env = {"SWITCHBOARD__DATA_DIR": str(tmp / "broker")}
        self.broker = self.system.run_broker("broker-0", self.broker_env)
        self.client = Client(self.system.broker)
        self.nodes: dict[str, list[Proc]] = {"n1": [], "n2": []}
        # When each killed node was seen dead (wall clock): its last interval ends there.
        self.dead_at: dict[int, float] = {}
        self.start_node("n1")
        wait_for(lambda: self.owner() == "n1")
        self.start_node("n2", "--standby")
        wait_for(lambda: self.nodes["n2"][-1].has_logged("address refused"))

    def start_node(self, node_id: str, *extra: str) -> Proc:
        name = f"{node_id}-{len(self.nodes[node_id])}"
        proc = self.system.run(
            "--role", "node", "--node-id", node_id, "--actors", ADDRESS, *extra, name=name
        )
        self.nodes[node_id].append(proc)
        return proc

    def owner(self) -> str | None:
        return current_owner(self.client, ADDRESS)

    def kill_owner(self) -> float:
        """kill -9 the owner; seconds until the standby owns the address."""
        owner = self.owner()
        assert owner is not None
        standby = "n2" if owner == "n1" else "n1"
        proc = self.nodes[owner][-1]
        proc.signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.popen.wait()
        self.dead_at[proc.pid] = time.time()
        took = wait_for(lambda: self.owner() == standby) - killed
        self.start_node(owner, "--standby")
        wait_for(lambda: self.nodes[owner][-1].has_logged("address refused"))
        return took

    def kill_broker(self, round_: int) -> tuple[float, float, bool, bool]:
        """kill -9 the broker, start another: (from kill, from serving, moved, stopped)."""
        before = self.owner()
        assert before is not None
        holder = self.nodes[before][-1]
        stops = _stops(holder)
        self.broker.signal(signal.SIGKILL)
        killed = time.monotonic()
        self.broker.popen.wait()
        self.broker = self.system.run_broker(f"broker-{round_}", self.broker_env)
        serving = time.monotonic()
        back = wait_for(lambda: self.owner() is not None)
        after = self.owner()
        return back - killed, back - serving, after != before, _stops(holder) > stops

    def overlaps(self) -> int:
        intervals = [
            live
            for node_id, procs in self.nodes.items()
            for proc in procs
            for live in live_intervals(proc, node_id, ADDRESS, self.dead_at.get(proc.pid))
        ]
        return len(overlapping(intervals))

    def close(self) -> None:
        self.client.close()
        self.system.stop_all()


def _stops(proc: Proc) -> int:
    return sum(1 for e in proc.log_events() if e.get("event") == "actor stopped")


def summarize(name: str, samples: list[float], bound: str) -> None:
    print(
        f"{name:<28} n={len(samples):<3} p50 {statistics.median(samples):6.2f} s   "
        f"max {max(samples):6.2f} s   bound {bound}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 node and 5 broker deaths")
    parser.add_argument("--node-rounds", type=int, default=None)
    parser.add_argument("--broker-rounds", type=int, default=None)
    args = parser.parse_args()
    node_rounds = args.node_rounds or (3 if args.quick else 10)
    broker_rounds = args.broker_rounds or (5 if args.quick else 20)

    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        world = World(Path(tmp))
        try:
            takeovers = [world.kill_owner() for _ in range(node_rounds)]
            restarts = [world.kill_broker(r) for r in range(1, broker_rounds + 1)]
            overlaps = world.overlaps()
        finally:
            world.close()

    node_bound = EXPIRY_S + INTERVAL_S / 4
    print(f"lease {LEASE_S:.2f} s (I {INTERVAL_S} s x L {LIVENESS}), expiry {EXPIRY_S:.2f} s")
    summarize("node takeover", takeovers, f"{node_bound:.2f} s after the last heartbeat")
    summarize("broker recovery (from kill)", [r[0] for r in restarts], "start-up + I")
    summarize("broker recovery (serving)", [r[1] for r in restarts], f"I = {INTERVAL_S} s")
    moves = sum(r[2] for r in restarts)
    stops = sum(r[3] for r in restarts)
    print(f"ownership moves on broker restart: {moves} of {broker_rounds} (must be 0)")
    print(f"owner stopped its actor on broker restart: {stops} (broker back after the lease)")
    print(f"overlapping owners: {overlaps} (must be 0)")
    summary = {
        "node_takeover_s_p50": round(statistics.median(takeovers), 3),
        "node_takeover_s_max": round(max(takeovers), 3),
        "node_takeover_bound_s": round(node_bound, 3),
        "broker_recovery_s_p50": round(statistics.median(r[0] for r in restarts), 3),
        "broker_recovery_s_max": round(max(r[0] for r in restarts), 3),
        "broker_recovery_after_serving_s_max": round(max(r[1] for r in restarts), 3),
        "broker_recovery_bound_after_serving_s": INTERVAL_S,
        "owner_stops_on_broker_restart": stops,
        "overlaps": overlaps,
        "ownership_moves_on_broker_restart": moves,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
