"""Benchmark: posting at a high rate through the sandbox's control API.

A sandbox on its own thread with 20 public channels and one unmodified Telethon client
that is a member of all of them. Measures posts per second made one HTTP ``post`` call
at a time (the baseline), then with one ``post_many`` call, and how fast the Telethon
client receives the batch as live updates. ``--quick`` keeps the run under 30 s. The last
line printed is one JSON object with ``per_call_posts_per_s``, ``batch_posts_per_s``,
``delivered_per_s`` and ``ratio`` (batch / per call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from telethon import events

from runtime.logging import configure_logging
from sandbox import SandboxThread
from sandbox.client import new_client
from sandbox.http import ControlClient

PHONE = "+15550000002"
CHANNELS = 20
DELIVERY_TIMEOUT_S = 120.0


async def run(per_call: int, batch: int) -> dict[str, float]:
    with SandboxThread() as sandbox:
        control = ControlClient(sandbox.control_url)
        names = [f"bench{i}" for i in range(CHANNELS)]
        user = control.create_user(phone=PHONE, first_name="Bench")
        for name in names:
            channel = control.create_channel(title=name, username=name)
            control.add_member(channel_id=channel["id"], user_id=user["id"])
        client = new_client(sandbox)
        await client.start(phone=PHONE, code_callback=lambda: control.last_login_code(phone=PHONE))
        received = 0
        done = asyncio.Event()
        target = per_call + batch * CHANNELS

        @client.on(events.NewMessage())
        async def count(_event: events.NewMessage.Event) -> None:
            nonlocal received
            received += 1
            if received >= target:
                done.set()

        try:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            for i in range(per_call):  # off the loop: the client must keep reading
                await loop.run_in_executor(
                    None, lambda i=i: control.post(channel=names[i % CHANNELS], text=f"one {i}")
                )
            per_call_s = time.perf_counter() - started
            started = time.perf_counter()
            await loop.run_in_executor(
                None, lambda: control.post_many(channels=names, count=batch, text="many {n}")
            )
            batch_s = time.perf_counter() - started
            await asyncio.wait_for(done.wait(), DELIVERY_TIMEOUT_S)
            delivered_s = time.perf_counter() - started
        finally:
            await client.disconnect()
    per_call_rate = per_call / per_call_s
    batch_rate = batch * CHANNELS / batch_s
    delivered_rate = batch * CHANNELS / delivered_s
    print(f"{'mode':<28}{'posts':>8}{'posts/s':>12}")
    print(f"{'post, one HTTP call each':<28}{per_call:>8}{per_call_rate:>12.0f}")
    print(f"{'post_many, one HTTP call':<28}{batch * CHANNELS:>8}{batch_rate:>12.0f}")
    print(f"{'received live by Telethon':<28}{batch * CHANNELS:>8}{delivered_rate:>12.0f}")
    return {
        "per_call_posts_per_s": round(per_call_rate),
        "batch_posts_per_s": round(batch_rate),
        "delivered_per_s": round(delivered_rate),
        "ratio": round(batch_rate / per_call_rate, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer posts")
    args = parser.parse_args()
    configure_logging("warning")  # logs go to stderr; stdout ends with the JSON line
    per_call, batch = (500, 250) if args.quick else (2000, 1000)
    print(json.dumps(asyncio.run(run(per_call, batch))))


if __name__ == "__main__":
    main()
