"""Command -> reply through the whole system, against a bare Telethon bot, in one run.

A sandbox user (an unmodified Telethon client) sends ``/help`` and waits for the answer:

* **ours**: the sandbox pushes the message to ``session:<bot>`` (a node process), which
  publishes a ``BotCommand`` on the bus; ``bot:<bot>`` (another node process) routes it
  and asks ``session:<bot>`` for ``SendMessage`` (idempotency key, broker hop, Telethon
  send), which the sandbox pushes to the user;
* **baseline**: a bare Telethon bot (a process of its own, the same help text) answering
  with ``event.respond`` in its ``NewMessage`` handler.

The sandbox's bot send limits are off (every reply goes to one chat, and 1/s per chat
would be all this measured). Rounds alternate baseline and ours (speeds drift on a small
shared machine: only the ratio from one run means anything). ``--latency-ms N`` makes
the sandbox hold every Telegram request N ms, as ``session_overhead.py`` does; each reply
then costs at least two Telegram calls (the user's send and the bot's) on both paths.

Last line: one JSON object with ``p50_ms``, ``p99_ms``, ``per_s`` (ours, one command in
flight), ``baseline_p50_ms``, ``ratio`` (ours / baseline p50) and the baseline's p99 and
rate.

    python tests/benchmarks/bot_roundtrip.py --quick [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from telethon import TelegramClient, events  # noqa: E402

from actors.bot import build_router  # noqa: E402
from actors.bot.handlers.start import INTRO  # noqa: E402
from actors.bot.router import Who  # noqa: E402
from runtime.loop import LoopThread  # noqa: E402
from sandbox import SandboxThread  # noqa: E402
from sandbox.client import new_client  # noqa: E402
from tests.bot.support import app_node  # noqa: E402
from tests.session.conftest import Sessions  # noqa: E402


def bare_bot_main(host: str, port: int, key: str, token: str, text: str, ready: object) -> None:
    """The baseline: a bare Telethon bot answering /help, in a process of its own."""

    class Address:
        def __init__(self) -> None:
            self.host, self.port, self.public_key_pem = host, port, key

    async def run() -> None:
        bot = new_client(Address())
        await bot.start(bot_token=token)

        @bot.on(events.NewMessage(pattern="/help"))
        async def answer(event: events.NewMessage.Event) -> None:
            await event.respond(text)

        ready.set()  # type: ignore[attr-defined]
        await bot.run_until_disconnected()

    asyncio.run(run())


async def measure(user: TelegramClient, bot_id: int, count: int) -> list[float]:
    """Seconds from sending /help to the bot's reply arriving, ``count`` times."""
    samples: list[float] = []
    for _ in range(count):
        got: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def reply(event: events.NewMessage.Event, got: asyncio.Future[None] = got) -> None:
            if not got.done():
                got.set_result(None)

        handler = events.NewMessage(chats=[bot_id], incoming=True)
        user.add_event_handler(reply, handler)
        started = time.perf_counter()
        await user.send_message(bot_id, "/help")
        await asyncio.wait_for(got, 30)
        samples.append(time.perf_counter() - started)
        user.remove_event_handler(reply, handler)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands per round")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    per_round, rounds = (20, 4) if args.quick else (50, 8)
    # The help text a non-admin sees, so both bots send the same bytes.
    help_text = "\n".join(
        [INTRO, "", "Commands:"]
        + [
            f"{r.usage or '/' + r.key} — {r.description}"
            for r in build_router().visible(Who(user_id=0))
        ]
    )
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(sys.stderr):
        sandbox = SandboxThread().start()
        # One chat gets every reply: Telegram's 1/s per chat would be all this measured.
        sandbox.control.set_limits(bot_limits=False)
        system = Sessions(Path(tmp), sandbox=sandbox)
        ours = system.add_bot("newsbot")
        bare = sandbox.control.create_bot("barebench_bot")
        system.write_config()
        system.run_broker()
        system.node("sessions", "newsbot")
        with system.client() as client:
            system.wait_state(client, "newsbot", "authorized")
        app_node(system, "botnode", "bot=bot:newsbot")
        mp = multiprocessing.get_context("spawn")
        ready = mp.Event()
        baseline = mp.Process(
            target=bare_bot_main,
            args=(sandbox.host, sandbox.port, sandbox.public_key_pem, bare.token, help_text, ready),
            daemon=True,
        )
        baseline.start()
        ready.wait(30)
        loop = LoopThread(name="bench-user")
        phone = "+15990000001"
        sandbox.control.create_user(phone, "Bench", username="benchuser1")

        async def log_in() -> TelegramClient:
            user = new_client(sandbox)
            await user.start(
                phone=phone, code_callback=lambda: sandbox.control.last_login_code(phone)
            )
            return user

        user = loop.run(log_in(), 30)
        loop.run(measure(user, ours.id, 3), 60)  # warm up both paths
        loop.run(measure(user, bare.id, 3), 60)
        if args.latency_ms:
            sandbox.control.delay(None, args.latency_ms / 1e3)
        mine: list[float] = []
        base: list[float] = []
        took = [0.0, 0.0]
        for _ in range(rounds):
            started = time.perf_counter()
            base += loop.run(measure(user, bare.id, per_round), 300)
            took[0] += time.perf_counter() - started
            started = time.perf_counter()
            mine += loop.run(measure(user, ours.id, per_round), 300)
            took[1] += time.perf_counter() - started

        async def log_out() -> None:
            await user.disconnect()

        loop.run(log_out(), 10)
        loop.stop()
        baseline.terminate()
        system.stop_all()
        sandbox.stop()
    summary = {
        "latency_ms": args.latency_ms,
        "commands": len(mine),
        "p50_ms": round(pct(mine, 0.5), 2),
        "p99_ms": round(pct(mine, 0.99), 2),
        "per_s": round(len(mine) / took[1], 1),
        "baseline_p50_ms": round(pct(base, 0.5), 2),
        "baseline_p99_ms": round(pct(base, 0.99), 2),
        "baseline_per_s": round(len(base) / took[0], 1),
        "ratio": round(statistics.median(mine) / statistics.median(base), 2),
    }
    print(f"bot command -> reply, {args.latency_ms:g} ms added per Telegram request")
    print(f"{'':24}{'ours':>10}{'bare Telethon bot':>20}")
    print(f"{'p50 (ms)':24}{summary['p50_ms']:>10}{summary['baseline_p50_ms']:>20}")
    print(f"{'p99 (ms)':24}{summary['p99_ms']:>10}{summary['baseline_p99_ms']:>20}")
    print(f"{'commands/s (1 in flight)':24}{summary['per_s']:>10}{summary['baseline_per_s']:>20}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
