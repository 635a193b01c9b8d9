"""Run every benchmark, one after the other, and print their summary lines together.

    python tests/benchmarks/run_all.py --quick     # about 8 minutes on 2 cores

Each benchmark runs in its own process (as when started alone) and prints its own table;
this collects the last line of each, its JSON summary, and prints them all at the end,
followed by one JSON object keyed by benchmark. Benchmarks measure only what they print;
nothing here compares a figure against a threshold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "runtime_rtt",
    "sandbox_rpc",
    "sandbox_posting",
    "session_overhead",
    "shared_session",
    "store_writes",
    "api_bench",
    "failover",
    "first_start",
    "ingest",
    "monitor_scale",
    "bot_roundtrip",
    "delivery",
    "accounts_scale",
)


def run(name: str, quick: bool) -> dict[str, object]:
    """Run one benchmark, echoing its output; returns its JSON summary (last line)."""
    command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return {"error": f"exit code {done.returncode}"}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args()
    results = {name: run(name, args.quick) for name in args.only}
    print("\n=== summary")
    for name, summary in results.items():
        print(f"{name}: {json.dumps(summary)}")
    print(json.dumps(results))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
