"""Monitor scale: 1,000 channels on 2 reader accounts, everything in one node process.

One node process (``run.py --role node``) hosts both readers' session actors,
``store:main`` and ``parser:main``; a broker process and the sandbox (in this process)
complete the system. The readers are logged in, then 1,000 sandbox channels (500 per
reader: Telegram's cap) are added through the parser, one post of backfill each. Then:

* **at rest** for ``--idle`` seconds: the node's resident memory (``VmRSS``), its CPU
  time over the window as a percentage of one core, and the Telegram calls the sandbox
  served in the window (every method, both readers), per minute. Session watchdogs run
  at their default interval (30 s), as deployed.
* **reconciler latency**: live updates of 20 channels are withheld (the sandbox pushes
  nothing for them), one post is made in each, and the time until each is stored (its
  ``PostStored`` event) is measured: what the reconciler alone recovers, at its
  configured period and call budget.

The reconciler's settings are printed with the figures: the period a quiet channel is
checked at, and the history calls a reader may make a minute, bound the calls at rest
(``channels / period`` or ``readers * calls_per_min``, whichever is smaller) and the
reconciler's latency (about one period). The last line printed is one JSON object:
``channels``, ``rss_mb``, ``idle_cpu_pct``, ``calls_per_min_idle``, ``reconcile_p99_s``.

    python tests/benchmarks/monitor_scale.py --quick   # 30 s at rest, period 30 s
    python tests/benchmarks/monitor_scale.py           # 120 s at rest, period 60 s
    python tests/benchmarks/monitor_scale.py --period 600 --calls-per-min 60   # the defaults
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocols import parser as p  # noqa: E402
from runtime.client import Client  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from sandbox import SandboxThread  # noqa: E402
from tests.benchmarks.ingest import Collector, percentile  # noqa: E402
from tests.parser.support import PARSER, RELAXED, TIMEOUT, Monitor  # noqa: E402
from tests.runtime.support import wait_until  # noqa: E402
from tests.session.support import log_in  # noqa: E402

READERS = ["r1", "r2"]
WITHHELD = 20


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s at rest, period 30 s")
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds at rest measured")
    parser.add_argument("--period", type=float, default=0.0, help="parser.reconcile_s")
    parser.add_argument("--calls-per-min", type=int, default=600, help="parser.calls_per_min")
    args = parser.parse_args()
    idle = args.idle or (30.0 if args.quick else 120.0)
    period = args.period or (30.0 if args.quick else 60.0)
    config = {
        "backfill": "1",
        "reconcile_min_s": str(period / 3),
        "reconcile_s": str(period),
        "reconcile_max_s": str(period * 10),
        "calls_per_min": str(args.calls_per_min),
        "resolves_per_min": "100000",
        "resolves_per_day": "100000",
        "joins_per_hour": "100000",
        "joins_per_day": "100000",
        "call_timeout_s": "60.0",
    }
    configure_logging("warning")  # to stderr: stdout is the report's
    sandbox = SandboxThread().start()
    control = sandbox.control
    with tempfile.TemporaryDirectory(prefix="monitor-scale-") as tmp:
        monitor = Monitor(Path(tmp), sandbox=sandbox, parser=config)
        # The session actors' default watchdog (the tests' file says 1 s).
        monitor.overrides["SWITCHBOARD__SESSION__WATCHDOG_INTERVAL_S"] = "30"
        client: Client | None = None
        try:
            monitor.readers = READERS
            phones = {name: monitor.add_user(name, limits=RELAXED) for name in READERS}
            monitor.run_broker()
            client = monitor.client()
            node = monitor.run(
                "--role",
                "node",
                "--node-id",
                "all",
                "--actors",
                "store=store:main,parser=parser:main",
                "--accounts",
                ",".join(READERS),
                name="all",
            )
            wait_until(lambda: node.has_logged("hosting address"), 60, "the node to start")
            for name, (phone, _) in phones.items():
                log_in(monitor, client, name, phone)
            started = time.monotonic()
            channels = []
            for n in range(args.channels):
                channel = control.create_channel(f"Scale {n}", username=f"scale{n}x")
                control.post(channel.id, "hello")
                client.request(PARSER, p.AddChannel(ref=f"@{channel.username}"), timeout=TIMEOUT)
                channels.append(channel)
            add_s = time.monotonic() - started
            status = client.request(PARSER, p.GetParserStatus(), timeout=TIMEOUT)
            per_reader = {r.account: r.channels for r in status.readers}
            time.sleep(period)  # the first checks after adding are behind us
            pid = node.pid
            calls_before, cpu_before = sum(control.calls().values()), cpu_seconds(pid)
            time.sleep(idle)
            calls = sum(control.calls().values()) - calls_before
            cpu_pct = (cpu_seconds(pid) - cpu_before) / idle * 100
            rss = rss_mb(pid)

            collector = Collector(monitor.events_out)
            collector.start()
            time.sleep(1.0)
            quiet = channels[:: max(1, len(channels) // WITHHELD)][:WITHHELD]
            for channel in quiet:
                control.withhold_updates(channel.id)
            for channel in quiet:
                control.post(channel.id, f"{time.time():.6f}")
            wait_until(
                lambda: len(collector.latencies) >= len(quiet),
                period * 20,
                "the reconciler to store the withheld posts",
            )
            collector.stop.set()
            collector.join()
        finally:
            if client is not None:
                client.close()
            monitor.stop_all()
            sandbox.stop()
    reconcile = collector.latencies
    calls_per_min = calls / idle * 60
    print(
        f"{args.channels} channels on {len(READERS)} readers {per_reader}, added in {add_s:.0f} s"
    )
    print(
        f"reconciler: quiet channels every {period:.0f} s, at most {config['calls_per_min']} "
        f"history calls a minute per reader"
    )
    print(
        f"at rest ({idle:.0f} s): RSS {rss:.0f} MB, CPU {cpu_pct:.1f} % of a core, "
        f"{calls_per_min:.0f} Telegram calls a minute"
    )
    print(
        f"withheld posts stored after: p50 {percentile(reconcile, 0.5):.1f} s, "
        f"p99 {percentile(reconcile, 0.99):.1f} s (n={len(reconcile)})"
    )
    summary = {
        "channels": args.channels,
        "rss_mb": round(rss, 1),
        "idle_cpu_pct": round(cpu_pct, 1),
        "calls_per_min_idle": round(calls_per_min, 1),
        "reconcile_p99_s": round(percentile(reconcile, 0.99), 1),
        "reconcile_p50_s": round(percentile(reconcile, 0.5), 1),
        "reconcile_period_s": period,
        "add_s": round(add_s, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
