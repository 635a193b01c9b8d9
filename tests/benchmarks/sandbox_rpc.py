"""Benchmark: one unmodified Telethon client against the sandbox.

Measures messages.getHistory round trips (calls/s, p50, p99) and the time of a full
connect including the auth-key exchange. ``--quick`` keeps the run well under 60 s.
The last line printed is one JSON object with ``calls_per_s``, ``p50_us``, ``p99_us``
and ``connect_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.logging import configure_logging
from sandbox import Sandbox
from sandbox.client import new_client

PHONE = "+15550000001"


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) of samples, nearest-rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def measure_connects(sandbox: Sandbox, count: int) -> list[float]:
    """Seconds per full connect (TCP + auth key exchange + initConnection/getConfig)."""
    durations = []
    for _ in range(count):
        client = new_client(sandbox)
        started = time.perf_counter()
        await client.connect()
        durations.append(time.perf_counter() - started)
        await client.disconnect()
    return durations


async def run(calls: int, connects: int, limit: int) -> dict[str, float]:
    sandbox = await Sandbox.start()
    try:
        control = sandbox.control
        channel = control.create_channel("Bench", username="bench")
        for i in range(200):
            control.post(channel.id, f"post {i}")
        control.create_user(PHONE, "Bench")
        connect_times = await measure_connects(sandbox, connects)

        client = new_client(sandbox)
        await client.start(phone=PHONE, code_callback=lambda: control.last_login_code(PHONE))
        try:
            peer = await client.get_input_entity("bench")
            for _ in range(20):  # warm-up
                await client.get_messages(peer, limit=limit)
            samples = []
            started = time.perf_counter()
            for _ in range(calls):
                t0 = time.perf_counter()
                await client.get_messages(peer, limit=limit)
                samples.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        finally:
            await client.disconnect()
    finally:
        await sandbox.stop()
    return {
        "calls": calls,
        "limit": limit,
        "calls_per_s": round(calls / elapsed, 1),
        "p50_us": round(statistics.median(samples) * 1e6),
        "p99_us": round(percentile(samples, 99) * 1e6),
        "connect_ms": round(statistics.median(connect_times) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (well under 60 s)")
    parser.add_argument("--limit", type=int, default=20, help="messages per getHistory")
    args = parser.parse_args()
    configure_logging("warning")  # logs go to stderr; stdout ends with the JSON line
    calls, connects = (2000, 5) if args.quick else (20000, 20)
    result = asyncio.run(run(calls, connects, args.limit))
    print(
        f"getHistory(limit={args.limit}) x{calls}: {result['calls_per_s']} calls/s, "
        f"p50 {result['p50_us']} us, p99 {result['p99_us']} us; "
        f"connect (key exchange) {result['connect_ms']} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
