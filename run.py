"""Switchboard's one command.

    python run.py                        # the whole system in one process
    python run.py --role broker          # just the broker (multi-process deployment)
    python run.py --role node --actors echo --node-id n1
    python run.py status                 # nodes, addresses, owners, epochs, failures
    python run.py call ADDRESS '{"type": "Echo", "text": "hi"}'

Exit codes: 0 success, 1 a request failed, 2 bad configuration or arguments,
3 an address is owned by another node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec
import structlog

from config import ConfigError, Settings, load_settings
from protocols.broker import GetStatus, Status
from protocols.codec import FrameError, body_from_json, body_to_json
from runtime.client import Client
from runtime.errors import AddressTakenError, RequestError
from runtime.launcher import (
    parse_actor_specs,
    session_actors,
    start_broker,
    start_node,
    wait_for_signal,
)
from runtime.logging import configure_logging
from sandbox.demo import start_demo

log = structlog.get_logger("run")

COMMANDS = ("run", "status", "call")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    return {"run": _run, "status": _status, "call": _call}[args.command](settings, args)


def _with_default_command(argv: list[str]) -> list[str]:
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        return ["run", *argv]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="Switchboard runtime")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, default=None, help="TOML file (switchboard.toml)")
        return p

    run = command("run", "run the system, or one role of it (the default command)")
    run.add_argument("--role", choices=("all", "broker", "node"), default="all")
    run.add_argument(
        "--actors",
        default="echo",
        help="comma-separated actor kinds to host, KIND or KIND=ADDRESS (default: echo)",
    )
    run.add_argument(
        "--accounts",
        default=None,
        help="comma-separated accounts whose session actors this node hosts (default: all)",
    )
    run.add_argument("--node-id", default=None, help="this node's id (default: host-pid)")
    run.add_argument(
        "--standby",
        action="store_true",
        help="wait for addresses owned elsewhere and take them over when their owner dies",
    )

    status = command("status", "show nodes, addresses, owners, epochs and failed actors")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=float, default=3.0)

    call = command("call", "send one request and print the reply as JSON")
    call.add_argument("address")
    call.add_argument("message", help='the body as JSON, e.g. {"type": "Echo", "text": "hi"}')
    call.add_argument("--timeout", type=float, default=10.0)
    call.add_argument("--idempotency-key", default="")
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    demo = None
    if args.role == "all" and not settings.accounts and args.accounts is None:
        demo, accounts = start_demo(settings.data_dir)
        settings = msgspec.structs.replace(settings, accounts=accounts)
        log.info("no accounts configured: running against the built-in sandbox", port=demo.port)
    names = sorted(settings.accounts) if args.accounts is None else _split(args.accounts)
    try:
        actors = {
            **parse_actor_specs(_split(args.actors)),
            **(session_actors(settings, names) if args.role != "broker" else {}),
        }
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    broker = None
    node = None
    try:
        if args.role in ("all", "broker"):
            broker = start_broker(settings, local=args.role == "all")
        if args.role in ("all", "node"):
            node = start_node(
                settings,
                actors,
                node_id=args.node_id,
                local=args.role == "all",
                standby=args.standby,
            )
        log.info("running; Ctrl-C to stop", role=args.role, broker=settings.runtime.broker_endpoint)
        wait_for_signal()
    except AddressTakenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        if node is not None:
            node.stop()
        if broker is not None:
            broker.stop()
        if demo is not None:
            demo.stop()
    return 0


def _split(items: str) -> list[str]:
    return [item.strip() for item in items.split(",") if item.strip()]


def _status(settings: Settings, args: argparse.Namespace) -> int:
    with Client(settings.runtime.broker_endpoint) as client:
        try:
            status = client.request("broker", GetStatus(), timeout=args.timeout)
        except RequestError as exc:
            print(
                f"error: no status from {settings.runtime.broker_endpoint}: {exc}", file=sys.stderr
            )
            return 1
    assert isinstance(status, Status)
    if args.json:
        print(msgspec.json.encode(status).decode())
    else:
        print(format_status(status))
    return 0


def format_status(status: Status) -> str:
    """The status as a human-readable report."""
    lines = [f"broker pid {status.broker_pid}, up {status.uptime_s:.0f}s", "", "nodes:"]
    for n in status.nodes:
        lines.append(
            f"  {n.node_id:<24} host {n.host} pid {n.pid} seen {n.last_seen_s:.1f}s ago "
            f"({len(n.addresses)} addresses)"
        )
    lines += ["", "addresses:"]
    lines.append(f"  {'ADDRESS':<28} {'NODE':<24} {'EPOCH':>14} {'STATE':<10} MAILBOX RESTARTS")
    for a in status.addresses:
        lines.append(
            f"  {a.address:<28} {a.node_id:<24} {a.epoch:>14} {a.state or '?':<10} "
            f"{a.mailbox:>7} {a.restarts:>8}"
        )
    lines += ["", "failed actors:" if status.failed else "failed actors: none"]
    for address in status.failed:
        error = next((a.last_error for a in status.addresses if a.address == address), "")
        lines.append(f"  {address}: {error}")
    return "\n".join(lines)


def _call(settings: Settings, args: argparse.Namespace) -> int:
    try:
        body = body_from_json(args.message)
    except FrameError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    with Client(settings.runtime.broker_endpoint) as client:
        try:
            reply = client.request(
                args.address, body, timeout=args.timeout, idempotency_key=args.idempotency_key
            )
        except RequestError as exc:
            print(body_to_json(exc.error).decode())
            return 1
    print(body_to_json(reply).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
