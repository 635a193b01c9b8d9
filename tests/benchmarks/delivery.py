"""Delivery of N posts to M subscribers under Telegram's bot limits, through the system.

The whole system in real processes against the sandbox (``tests/bot/support.py``): the
reader's session actor gets the posts live, the parser stores them, the bot reads the
store's sequence and sends one copy per (subscriber, post) through its session actor,
paced by the configured limits (the sandbox enforces the same limits and would answer
FLOOD_WAIT past them; the bot session's own send limit is set to
``--overall-per-s``). The limit-imposed maximum is ``min(overall_per_s, M *
private_per_s)``; the measured rate is the copies over the time from the burst being
posted to the last copy accepted by the sandbox.

Last line: JSON with ``delivered_per_s``, ``limit_per_s``, ``efficiency`` (measured /
limit), ``lost`` and ``duplicates`` (copies read back from every subscriber's chat).

    python tests/benchmarks/delivery.py --quick      # 10 posts to 20 subscribers, default limits
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sandbox import SandboxThread  # noqa: E402
from tests.bot.support import person, start_world  # noqa: E402
from tests.runtime.support import wait_until  # noqa: E402
from tests.session.conftest import Sessions  # noqa: E402

POST = re.compile(r"\n\nbench (\d+)\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 posts to 20 subscribers")
    parser.add_argument("--posts", type=int, default=None)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--overall-per-s", type=float, default=30.0)
    parser.add_argument("--private-per-s", type=float, default=1.0)
    args = parser.parse_args()
    posts = args.posts or (10 if args.quick else 30)
    subs = args.subscribers
    limit = min(args.overall_per_s, subs * args.private_per_s)
    settings = [
        "[bot.delivery]",
        f"overall_per_s = {args.overall_per_s}",
        f"private_per_s = {args.private_per_s}",
        "poll_interval_s = 0.5",
    ]
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(sys.stderr):
        sandbox = SandboxThread().start()
        control = sandbox.control
        control.set_limits(
            bot_per_s=args.overall_per_s,
            bot_burst=args.overall_per_s,
            bot_private_per_s=args.private_per_s,
        )
        system = Sessions(Path(tmp), sandbox=sandbox)
        world = start_world(
            system, sandbox, lambda user, admin: settings, send_per_s=args.overall_per_s
        )
        people = [person(sandbox, f"bench{n}") for n in range(subs)]
        channel = world.channel()
        for someone in people:
            world.say(f"/add_channel @{channel}", someone)
        for someone in people:
            world.wait_reply("Watching", someone, timeout=120)
        control.reset_bot_sends()
        started = time.time()
        control.post_many(channel, count=posts, text="bench {n}")
        total = posts * subs

        def sent() -> int:
            return sum(c.sent for c in control.bot_sends(world.bot.id))

        wait_until(lambda: sent() >= total, 60 + 3 * total / limit, "every copy sent")
        logs = control.bot_sends(world.bot.id)
        last = max(t for log in logs for t in log.times)
        refused = sum(log.refused for log in logs)
        copies = [
            Counter(int(m.group(1)) for m in map(POST.search, (x.text for x in world.chat(p))) if m)
            for p in people
        ]
        system.stop_all()
        sandbox.stop()
    delivered = sum(sum(c.values()) for c in copies)
    unique = sum(len(c) for c in copies)
    rate = total / (last - started)
    summary = {
        "posts": posts,
        "subscribers": subs,
        "delivered_per_s": round(rate, 2),
        "limit_per_s": limit,
        "efficiency": round(rate / limit, 3),
        "lost": total - unique,
        "duplicates": delivered - unique,
        "refused_by_sandbox": refused,
    }
    print(
        f"{posts} posts to {subs} subscribers, limits {args.overall_per_s}/s overall, "
        f"{args.private_per_s}/s per chat"
    )
    print(
        f"delivered {rate:.2f}/s of at most {limit:g}/s: efficiency {rate / limit:.3f}; "
        f"lost {summary['lost']}, duplicates {summary['duplicates']}, refused {refused}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
