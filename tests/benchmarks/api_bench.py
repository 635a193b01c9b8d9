"""The HTTP API under load: pages of posts and the status report, next to a bare handler.

One run, three measurements with the same load (``--clients`` concurrent aiohttp clients
in this process, each sending its next request as soon as the last one is answered, for
``--seconds``):

* **posts**: ``GET /channels/{id}/posts?limit=50`` on the API actor, served by
  ``python run.py`` (one process: broker, node, ``store:main``, ``api:main``; the page
  goes API -> ZeroMQ -> store actor -> SQLite and back);
* **baseline**: the same page from a bare aiohttp handler in a process of its own that
  reads the same SQLite file itself (read-only connection, the same query shape the
  store answers with) and encodes the same JSON (every field present, as the API sends);
* **status**: ``GET /status`` (JSON) on the API, which gathers the broker's, the store's
  and the parser's reports (shared for up to a second between concurrent callers).

The store is filled first through the runtime (``--posts`` posts in one channel). The last
line is one JSON object: ``posts_per_s``, ``baseline_per_s``, ``ratio`` (posts over
baseline), ``p50_ms``, ``p99_ms`` (posts), ``status_per_s``, ``status_p99_ms``,
``baseline_p99_ms``.

    python tests/benchmarks/api_bench.py --quick    # about 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from protocols import store  # noqa: E402
from runtime.client import Client  # noqa: E402

CHANNEL = -1001234567890
PAGE = 50

# The baseline: a bare aiohttp app over the same SQLite file (run as ``-c`` in a process).
BASELINE = """
import sqlite3, sys
import msgspec
from aiohttp import web

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, check_same_thread=False)
encode = msgspec.json.Encoder().encode
COLUMNS = ("seq", "channel_id", "message_id", "date", "text", "edit_date", "media", "views",
           "forwards", "deleted")
QUERY = (f"SELECT {', '.join(COLUMNS)} FROM posts"
         " WHERE channel_id = ? ORDER BY message_id DESC LIMIT ?")

async def page(request):
    limit = int(request.query["limit"])
    rows = db.execute(QUERY, (int(request.match_info["id"]), limit + 1)).fetchall()
    posts = [{"type": "Post", **dict(zip(COLUMNS, row)), "deleted": bool(row[9])}
             for row in rows[:limit]]
    last = db.execute("SELECT value FROM sequence").fetchone()[0]
    body = {"type": "Posts", "posts": posts, "last_seq": last, "more": len(rows) > limit}
    return web.Response(body=encode(body), content_type="application/json")

app = web.Application()
app.router.add_get("/channels/{id}/posts", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def load(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Requests per second and latencies (s) of ``clients`` loops GETting ``url``."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one_client(stop: float) -> None:
            while (started := time.perf_counter()) < stop:
                async with http.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        for _ in range(clients):  # warm the connections up
            async with http.get(url) as response:
                await response.read()
        began = time.perf_counter()
        await asyncio.gather(*(one_client(began + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    async def poll() -> None:
        give_up = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < give_up:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{url} did not answer within {timeout}s")

    asyncio.run(poll())


def fill(broker: str, posts: int) -> None:
    """One channel with ``posts`` posts, written through the store actor."""
    with Client(broker) as client:
        channel = store.Channel(id=CHANNEL, username="bench", title="Bench")
        client.request("store:main", store.SaveChannel(channel=channel), timeout=30)
        now = int(time.time())
        for start in range(1, posts + 1, store.MAX_BATCH):
            batch = [
                store.PostData(message_id=i, date=now - posts + i, text=f"post {i} " + "x" * 200)
                for i in range(start, min(posts, start + store.MAX_BATCH - 1) + 1)
            ]
            client.request("store:main", store.PutPosts(channel_id=CHANNEL, posts=batch), 60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--posts", type=int, default=5000)
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        api_port, base_port = free_port(), free_port()
        ports = [free_port() for _ in range(3)]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SWITCHBOARD__DATA_DIR": str(Path(tmp) / "data"),
            "SWITCHBOARD__RUNTIME__BROKER_ENDPOINT": f"tcp://127.0.0.1:{ports[0]}",
            "SWITCHBOARD__RUNTIME__EVENTS_IN_ENDPOINT": f"tcp://127.0.0.1:{ports[1]}",
            "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT": f"tcp://127.0.0.1:{ports[2]}",
            "SWITCHBOARD__API__PORT": str(api_port),
            "SWITCHBOARD__LOG__LEVEL": "warning",
        }
        system = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "--role", "all",
             "--actors", "store=store:main,api=api:main", "--accounts", ""],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        baseline = None
        try:
            api = f"http://127.0.0.1:{api_port}"
            wait_for(f"{api}/health", system)
            fill(env["SWITCHBOARD__RUNTIME__BROKER_ENDPOINT"], args.posts)
            db = Path(tmp) / "data" / "store.sqlite3"
            assert sqlite3.connect(db).execute("SELECT count(*) FROM posts").fetchone()[0]
            baseline = subprocess.Popen(
                [sys.executable, "-c", BASELINE, str(db), str(base_port)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            page = f"/channels/{CHANNEL}/posts?limit={PAGE}"
            wait_for(f"http://127.0.0.1:{base_port}{page}", baseline)
            posts_rate, posts_lat = asyncio.run(load(f"{api}{page}", args.clients, seconds))
            base_rate, base_lat = asyncio.run(
                load(f"http://127.0.0.1:{base_port}{page}", args.clients, seconds)
            )
            status_rate, status_lat = asyncio.run(load(f"{api}/status", args.clients, seconds))
        finally:
            for proc in (baseline, system):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    print(f"{args.clients} concurrent clients, {seconds:.0f} s each, a page of {PAGE} posts")
    print(f"{'':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rows = (
        ("GET posts via api:main", posts_rate, posts_lat),
        ("GET posts, bare SQLite", base_rate, base_lat),
        ("GET /status via api:main", status_rate, status_lat),
    )
    for name, rate, lat in rows:
        print(
            f"{name:28} {rate:8.0f} {percentile(lat, 0.5) * 1e3:8.2f} "
            f"{percentile(lat, 0.99) * 1e3:8.2f}"
        )
    summary = {
        "posts_per_s": round(posts_rate, 1),
        "baseline_per_s": round(base_rate, 1),
        "ratio": round(posts_rate / base_rate, 3),
        "p50_ms": round(percentile(posts_lat, 0.5) * 1e3, 2),
        "p99_ms": round(percentile(posts_lat, 0.99) * 1e3, 2),
        "status_per_s": round(status_rate, 1),
        "status_p99_ms": round(percentile(status_lat, 0.99) * 1e3, 2),
        "baseline_p99_ms": round(percentile(base_lat, 0.99) * 1e3, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
