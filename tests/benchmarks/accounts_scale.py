"""Accounts per node: N bot accounts in one node process, against the sandbox.

For each N (10, 50, 200 with ``--quick``; 10, 50, 200, 500 without), a fresh system: a
broker process, one node process (``run.py --role node --accounts b0,...``) hosting N
sandbox bots' session actors, and the sandbox in this process. Measured per N:

* ``ready_s``: from starting the node until every account reports ``authorized``;
* ``rss_mb`` and ``threads`` of the node (``/proc``) once all are ready and idle;
* ``getme_per_s``: ``GetMe`` sent to all N accounts at once, rounds for ``--seconds``,
  replies per second (each a round trip client -> broker -> node -> sandbox and back).

Timing as deployed (watchdog every 30 s, heartbeat 1 s). The last line printed is one
JSON object: ``rss_mb_per_account`` (the least-squares slope of RSS over N),
``threads_at_200``, ``ready_s_at_200``, ``getme_per_s`` (at the largest N), and the
figures per N.

    python tests/benchmarks/accounts_scale.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocols import session as s  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from sandbox import SandboxThread  # noqa: E402
from tests.session.conftest import Sessions  # noqa: E402
from tests.session.many import (  # noqa: E402
    DEPLOYED_TIMING,
    add_bots,
    ask_all,
    node_figures,
    wait_authorized,
)


def measure(sandbox: SandboxThread, tmp: Path, count: int, seconds: float) -> dict[str, float]:
    """One system with ``count`` accounts in one node; its figures."""
    tmp.mkdir()
    sessions = Sessions(tmp, sandbox=sandbox)
    sessions.overrides.update(DEPLOYED_TIMING)
    try:
        bots = add_bots(sessions, count)
        sessions.run_broker()
        with sessions.client() as client:
            started = time.monotonic()
            node = sessions.node("scale", ",".join(bots))
            wait_authorized(client, bots, timeout=600)
            ready_s = time.monotonic() - started
            targets = [f"session:{name}" for name in bots]
            ask_all(client, targets, s.GetMe(), timeout=60)  # warm: peers, first calls
            rss_mb, threads = node_figures(node.pid)
            replies, began = 0, time.monotonic()
            while time.monotonic() - began < seconds:
                answered = ask_all(client, targets, s.GetMe(), timeout=60)
                replies += sum(isinstance(r, s.Me) for r in answered.values())
            per_s = replies / (time.monotonic() - began)
    finally:
        sessions.stop_all()
    return {
        "accounts": count,
        "ready_s": round(ready_s, 2),
        "rss_mb": round(rss_mb, 1),
        "threads": threads,
        "getme_per_s": round(per_s, 1),
    }


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of y over x."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return num / sum((x - mean_x) ** 2 for x, _ in points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10, 50, 200; 5 s of GetMe")
    parser.add_argument("--counts", type=int, nargs="*", help="the N to measure")
    parser.add_argument("--seconds", type=float, help="how long GetMe rounds run per N")
    args = parser.parse_args()
    counts = args.counts or ([10, 50, 200] if args.quick else [10, 50, 200, 500])
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    configure_logging(level="warning")
    rows = []
    with SandboxThread() as sandbox, tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            rows.append(measure(sandbox, Path(tmp) / f"n{count}", count, seconds))
            print(json.dumps(rows[-1]), flush=True)
    by_count = {row["accounts"]: row for row in rows}
    largest = by_count[max(by_count)]
    at_200 = by_count.get(200, largest)
    summary = {
        "rss_mb_per_account": round(slope([(r["accounts"], r["rss_mb"]) for r in rows]), 3),
        "threads_at_200": at_200["threads"],
        "ready_s_at_200": at_200["ready_s"],
        "getme_per_s": largest["getme_per_s"],
        "per_n": rows,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
