"""How long the first ``python run.py`` takes until it serves, on an empty data directory.

    python tests/benchmarks/first_start.py [--quick]

The first start creates the sandbox's 2048-bit RSA key. Baseline, measured in the same
run: generating that key the old way, in pure Python (``rsa.newkeys``), next to the way
it is made now (OpenSSL through ``cryptography``). Each start runs the real command in a
fresh directory on free ports and counts until it logs "running; Ctrl-C to stop"; then
it is stopped with Ctrl-C. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rsa

# Runnable as a plain script from anywhere: the packages under test live at the repo root.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox.keys import KEY_BITS, new_private_key  # noqa: E402
from tests.runtime.support import REPO, free_port  # noqa: E402

READY = b'"running; Ctrl-C to stop"'


def first_start_s() -> tuple[float, float]:
    """Seconds from launching ``python run.py`` in an empty directory until it serves, and
    the CPU seconds the process used in all (start and stop: what a busy machine stretches).
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD__")}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "SWITCHBOARD__LOG__FORMAT": "json",
                "SWITCHBOARD__API__PORT": str(free_port()),
                **{
                    f"SWITCHBOARD__RUNTIME__{name}_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"
                    for name in ("BROKER", "EVENTS_IN", "EVENTS_OUT")
                },
            }
        )
        log = Path(tmp) / "run.log"
        cpu_before = _children_cpu_s()
        started = time.monotonic()
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "run.py")], cwd=tmp, env=env, stderr=err
            )
            try:
                while READY not in log.read_bytes():
                    if proc.poll() is not None:
                        raise RuntimeError(f"run.py exited {proc.returncode}: {log.read_text()}")
                    time.sleep(0.02)
                elapsed = time.monotonic() - started
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
        return elapsed, _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    rounds = 2 if parser.parse_args().quick else 5
    pure = [timed(lambda: rsa.newkeys(KEY_BITS)) for _ in range(rounds)]
    openssl = [timed(new_private_key) for _ in range(rounds)]
    starts, cpu = zip(*(first_start_s() for _ in range(rounds)), strict=True)
    print(f"{'':34} {'p50':>8} {'max':>8}  ({rounds} rounds)")
    for name, values in (
        ("RSA-2048 key, pure Python (before)", pure),
        ("RSA-2048 key, OpenSSL (now)", openssl),
        ("first python run.py until serving", starts),
        ("  its CPU time, start and stop", cpu),
    ):
        print(f"{name:34} {statistics.median(values):7.2f}s {max(values):7.2f}s")
    print(
        json.dumps(
            {
                "first_start_s_p50": round(statistics.median(starts), 2),
                "first_start_s_max": round(max(starts), 2),
                "first_start_cpu_s_p50": round(statistics.median(cpu), 2),
                "key_pure_python_s_p50": round(statistics.median(pure), 2),
                "key_openssl_s_p50": round(statistics.median(openssl), 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
