"""``python -m sandbox``: run the sandbox standalone until Ctrl-C.

Prints the MTProto port, the public key path and the control URL, then one JSON line
with the same for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

import structlog

from runtime.locks import SessionLockedError
from sandbox import Sandbox


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--data-dir", default="data/sandbox", help="key and world directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="MTProto port (0: any free)")
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control port")
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> None:
    sandbox = await Sandbox.start(args.data_dir, args.host, args.port, args.control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    info = {
        "port": sandbox.port,
        "public_key_path": str(sandbox.public_key_path),
        "control_url": sandbox.control_url,
    }
    print(f"sandbox MTProto port: {sandbox.port} (dc 2 at {sandbox.host})", flush=True)
    print(f"public key: {sandbox.public_key_path}", flush=True)
    print(f"control API: {sandbox.control_url}", flush=True)
    print(json.dumps(info), flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()


def main() -> None:
    """Entry point: run until SIGINT / SIGTERM, then stop cleanly.

    Exits 3 when another sandbox runs on the data directory (naming its pid) and 2 when a
    port cannot be bound, with one line on stderr.
    """
    # Logs go to stderr, so stdout carries only the lines above (scripts read the JSON).
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_main(_parse_args()))
    except SessionLockedError as exc:
        print(f"error: another sandbox runs on this data directory: {exc}", file=sys.stderr)
        sys.exit(3)
    except OSError as exc:
        print(f"error: {exc} (choose others with --host, --port, --control-port)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
