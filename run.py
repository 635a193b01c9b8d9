"""Switchboard's one command.

    python run.py                        # the whole system in one process (the demo
                                         #   against the built-in sandbox if no account)
    python run.py --role broker          # one role per process: the broker ...
    python run.py --role node --node-id n1 --accounts alice --actors echo   # ... or a node
    python run.py --role node --node-id n2 --accounts alice --standby
                                         # a standby: takes alice over when n1 dies
    python run.py status                 # nodes, addresses, owners, epochs, failures
    python run.py call ADDRESS '{"type": "Echo", "text": "hi"}'   # or - (stdin), @FILE
    python run.py login ACCOUNT [--qr]   # phone code (and 2FA) or QR, at the terminal
    python run.py export-session ACCOUNT # print the account's StringSession
    python run.py import-session ACCOUNT < string.txt
    python run.py curve-keys             # a key pair to paste into switchboard.toml

Exit codes: 0 success, 1 a request failed or no broker answered, 2 bad configuration or
arguments (an endpoint that cannot be bound included), 3 something is held by another
process (an address owned by another node, a locked session file, a data directory where
another whole system or sandbox runs, an endpoint in use), 130 interrupted (Ctrl-C),
141 stdout was closed early (``run.py status | head -1``).
"""

from __future__ import annotations

import signal

# Ctrl-C while the imports below run (a second or more on a busy machine) ends the process
# quietly instead of with a traceback from deep inside some library; main() restores it.
if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import structlog

from config import ConfigError, Settings, accounts_toml, load_settings
from config.settings import ACCOUNT_NAME_PATTERN
from protocols.base import Request
from protocols.broker import GetStatus, Status
from protocols.codec import BODY_TYPES, FrameError, body_from_json, body_to_json
from protocols.errors import Timeout
from protocols.session import (
    ExportSession,
    GetSessionStatus,
    PasswordNeeded,
    QrLoginStatus,
    SessionStatus,
    StartLogin,
    StartQrLogin,
    SubmitCode,
    SubmitPassword,
    User,
    session_address,
)
from runtime import curve
from runtime.actor import ActorFactory
from runtime.broker import Broker
from runtime.client import Client
from runtime.errors import (
    AddressTakenError,
    BrokerUnreachableError,
    DataDirInUseError,
    EndpointError,
    ExposedSecretError,
    RequestError,
    UsageError,
)
from runtime.launcher import (
    check_listen,
    client_for,
    parse_actor_specs,
    reach,
    start_broker,
    start_node,
    use_curve_identity,
    wait_for_signal,
)
from runtime.locks import SessionFileLock, SessionLockedError
from runtime.logging import configure_logging
from runtime.node import Node
from runtime.private import private_dirs, secure_at_rest

log = structlog.get_logger("run")

COMMANDS = ("run", "status", "call", "login", "export-session", "import-session", "curve-keys")
_QR_ATTEMPTS = 3
# What a process of each role hosts without --actors: the whole system includes the
# application's store and serves the HTTP API; a node hosts session actors (--accounts)
# and what it is told; a bot process hosts a BotActor per bot account (--accounts).
ROLE_ACTORS = {
    "all": "echo,store=store:main,api=api:main",
    "node": "",
    "store": "store=store:main",
    "parser": "parser=parser:main",
    "api": "api=api:main",
    "bot": "",
    "broker": "",
}
DEMO_LOG = "switchboard.log"  # in data_dir: the demo's full structured log
# Where the demo writes its accounts for the operator commands (in data_dir).
DEMO_CONFIG = "demo.toml"


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = _parser().parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    commands = {
        "run": _run,
        "status": _status,
        "call": _call,
        "login": _login,
        "export-session": _export_session,
        "import-session": _import_session,
        "curve-keys": _curve_keys,
    }
    try:
        if args.command != "curve-keys":
            secure_at_rest(settings, [k for k in [settings.runtime.curve_key_file] if k])
            use_curve_identity(settings)
        return commands[args.command](settings, args)
    except ExposedSecretError as exc:
        return _fail(exc, 2)
    except (AddressTakenError, SessionLockedError, DataDirInUseError) as exc:
        return _fail(exc, 3)
    except EndpointError as exc:
        return _fail(exc, 3 if exc.in_use else 2)
    except (RequestError, BrokerUnreachableError) as exc:
        return _fail(exc, 1)
    except UsageError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except EOFError:
        return _fail("no answer to the question: stdin is closed", 1)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nobody to say it to.
        # stdout is pointed at /dev/null so that flushing it at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _fail(error: object, code: int) -> int:
    """Say what went wrong in one line on stderr; return the exit code."""
    print(f"error: {error}", file=sys.stderr)
    return code


def _with_default_command(argv: list[str]) -> list[str]:
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        return ["run", *argv]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, default=None, help="TOML file (switchboard.toml)")
        return p

    run = command("run", "run the system, or one role of it (the default command)")
    run.add_argument(
        "--role",
        choices=tuple(ROLE_ACTORS),
        default="all",
        help="all: the whole system in this process; broker; node: session actors "
        "(--accounts); store, parser, api: that actor; bot: a BotActor per bot account "
        "(--accounts)",
    )
    run.add_argument(
        "--actors",
        default=None,
        help="comma-separated actor kinds to host, KIND or KIND=ADDRESS "
        "(default: the role's own; for the whole system "
        f"{ROLE_ACTORS['all']}, the parser and a BotActor per bot account)",
    )
    run.add_argument(
        "--accounts",
        default=None,
        help="comma-separated accounts whose session actors this node hosts, or whose "
        "BotActors a bot role hosts (default: all, all bot accounts)",
    )
    run.add_argument(
        "--demo-seconds",
        type=_positive_seconds,
        default=None,
        help="the demo (no account configured) stops after this long and prints a summary",
    )
    run.add_argument("--node-id", default=None, help="this node's id (default: host-pid)")
    run.add_argument(
        "--standby",
        action="store_true",
        help="wait for addresses owned elsewhere and take them over when their owner dies",
    )

    status = command("status", "show nodes, addresses, owners, epochs and failed actors")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=_positive_seconds, default=3.0, help="seconds")

    call = command("call", "send one request and print the reply as JSON")
    call.formatter_class = argparse.RawDescriptionHelpFormatter
    call.epilog = _message_types_help()
    call.add_argument("address", help="where to send it, e.g. session:alice, echo, broker")
    call.add_argument(
        "message",
        help='the body as JSON, e.g. {"type": "Echo", "text": "hi"}; - reads it from stdin, '
        "@FILE from a file",
    )
    call.add_argument("--timeout", type=_positive_seconds, default=10.0, help="seconds")
    call.add_argument("--idempotency-key", default="")

    login = command("login", "log an account in: phone code (and 2FA password), or --qr")
    login.add_argument("account")
    login.add_argument("--qr", action="store_true", help="show a QR code to scan in the app")
    login.add_argument("--phone", default=None, help="the phone number (default: from config)")

    export = command("export-session", "print the account's session as a StringSession")
    export.add_argument("account")

    imp = command("import-session", "write the account's session file from a StringSession")
    imp.add_argument("account")
    imp.add_argument("--force", action="store_true", help="replace an existing session file")

    keys = command(
        "curve-keys",
        "print a new CURVE key pair for the broker; with --name, write a peer's key pair",
    )
    keys.add_argument(
        "--name",
        help="write <data_dir>/keys/NAME.key and NAME.key_secret (0600): this host's own "
        "pair, as zmq.auth loads it, for the broker to admit as peer NAME",
    )
    return parser


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _message_types_help() -> str:
    """The requests `call` can send, by conversation, with their fields."""
    by_module: dict[str, list[str]] = {}
    for cls in BODY_TYPES:
        if issubclass(cls, Request):
            fields = ", ".join(f.name for f in msgspec.structs.fields(cls))
            entry = f"{cls.__name__}({fields})" if fields else cls.__name__
            by_module.setdefault(cls.__module__.rpartition(".")[2], []).append(entry)
    lines = ["message types (the fields each takes; see protocols/<conversation>.py):"]
    for module, entries in by_module.items():
        first = f"  {module}: "
        lines.append(
            textwrap.fill(", ".join(entries), 92, initial_indent=first, subsequent_indent="    ")
        )
    return "\n".join(lines)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.role == "all" and not settings.accounts and args.accounts is None:
        return _run_demo(settings, args)
    if args.demo_seconds is not None:
        raise UsageError(
            "--demo-seconds is for the demo: the whole system with no account configured"
        )
    actors = _role_actors(settings, args)
    broker, node = None, None
    whole_system = _lock_data_dir(settings) if args.role == "all" else None
    try:
        if args.role in ("all", "broker"):
            broker = start_broker(settings, local=args.role == "all")
        if args.role != "broker":
            node = start_node(
                settings,
                actors,
                node_id=args.node_id,
                local=args.role == "all",
                standby=args.standby,
            )
        log.info("running; Ctrl-C to stop", role=args.role, broker=settings.runtime.broker_endpoint)
        wait_for_signal()
    finally:
        _stop(node, broker)
        if whole_system is not None:
            whole_system.release()
    return 0


def _role_actors(settings: Settings, args: argparse.Namespace) -> dict[str, ActorFactory]:
    """What a process of ``args.role`` hosts: its role's actors (or ``--actors``), the
    session actors of ``--accounts`` (a node, the whole system), the bots of a bot role.

    Raises UsageError for an unknown kind or account, or a bot role without a bot account;
    EndpointError when it hosts the HTTP API and ``api.port`` is taken (checked here, before
    anything starts: once started, a taken port is only a restarting actor in the logs).
    """
    # Imported here, not at the top: a broker (and status, call) needs none of the
    # application, and its start-up time counts against the owners' leases on a restart.
    from actors import actor_kinds, bot_actors, monitor_actors, session_actors

    specs = ROLE_ACTORS[args.role] if args.actors is None else args.actors
    kinds = actor_kinds(settings)
    actors = parse_actor_specs(_split(specs), kinds)
    if kinds.get("api") in actors.values():
        check_listen(settings.api.host, settings.api.port, "api.port")
    named = None if args.accounts is None else _split(args.accounts)
    if args.role in ("all", "node"):
        actors |= session_actors(settings, sorted(settings.accounts) if named is None else named)
    if args.role == "bot":
        bots = bot_actors(settings, named)
        if not bots:
            raise UsageError("--role bot hosts a BotActor per bot account, and none is configured")
        actors |= bots
    if args.role == "all":
        actors = monitor_actors(settings) | bot_actors(settings) | actors
    return actors


def _stop(node: Node | None, broker: Broker | None) -> None:
    if node is not None:
        node.stop()
    if broker is not None:
        broker.stop()


def _run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The whole system against the demo sandbox, narrated; the full log goes to a file
    (or JSON on stderr with ``log.format = "json"``). Returns 0 if there was no error."""
    from actors.demo import Demo, ErrorCounter
    from sandbox.demo import demo_settings, start_demo

    _role_actors(settings, args)  # wrong arguments are refused before anything starts
    print("Switchboard demo: no account is configured, so the whole system runs against")
    print("a built-in Telegram sandbox (a real MTProto server on loopback).", flush=True)
    data_dir = Path(settings.data_dir)
    with contextlib.ExitStack() as stack:
        stack.callback(_lock_data_dir(settings).release)
        if settings.log.format == "json":
            where, stream = "JSON on stderr", sys.stderr
        else:
            log_path = data_dir / DEMO_LOG
            # Open for the rest of the process: threads that end after the demo (the
            # loop's, Telethon's) may still log while they stop.
            where, stream = str(log_path), log_path.open("a")
        errors = ErrorCounter(stream)
        configure_logging(settings.log.level, "json", errors)
        world = start_demo(settings.data_dir)
        stack.callback(world.stop)
        print(
            f"  sandbox      {world.sandbox.host}:{world.sandbox.port} (kept in {data_dir}/sandbox)"
        )
        settings = demo_settings(settings, world)
        operator_config = _write_demo_config(settings)
        broker = start_broker(settings, local=True)
        stack.callback(broker.stop)
        actors = _role_actors(settings, args)
        node = start_node(settings, actors, node_id=args.node_id, local=True)
        stack.callback(node.stop)
        status_url = f"http://{settings.api.host}:{settings.api.port}/status"
        print(f"  broker       {settings.runtime.broker_endpoint} (run.py status, run.py call)")
        print(f"  actors       {', '.join(sorted(actors))}")
        print(f"  status page  {status_url}")
        print(f"  full logs    {where}")
        print(f"  accounts     {operator_config} (run.py login reader1 --config {operator_config})")
        print(
            f"  demo bot     @{world.bot.username}, demo user @{world.person.username}", flush=True
        )
        log.info("running; Ctrl-C to stop", role="all", demo=True, status_url=status_url)
        with client_for(settings) as client:
            demo = Demo(world, client, sys.stdout, errors, where, status_url)
            stop = threading.Event()
            with _signals_set(stop):
                summary = demo.play(stop, args.demo_seconds)
        print("\n".join(summary.lines()))
        print("Stopping.", flush=True)
    return 0 if summary.errors == 0 else 1


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` while in the block (Ctrl-C ends the demo cleanly)."""
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _lock_data_dir(settings: Settings) -> SessionFileLock:
    """The lock that makes this the only whole system on its data directory.

    Two would run two owners of every account and two writers of the store. Nodes of a
    multi-process deployment may share the directory: the broker and the session file
    locks keep them apart. Raises DataDirInUseError naming the running one's pid.
    """
    directory = Path(settings.data_dir)
    private_dirs(directory)
    lock = SessionFileLock(directory / "switchboard")
    try:
        lock.acquire()
    except SessionLockedError as exc:
        raise DataDirInUseError(
            f"another run.py runs the whole system on {directory} (pid {exc.pid} on "
            f"{exc.host}): stop it, or give this one another data_dir"
        ) from None
    return lock


def _write_demo_config(settings: Settings) -> Path:
    """Write the demo's accounts to ``<data_dir>/demo.toml`` (mode 0600) and return its path.

    So the operator commands reach the demo's accounts while it runs:
    ``run.py login reader --config data/demo.toml``.
    """
    path = Path(settings.data_dir) / DEMO_CONFIG
    text = f"data_dir = {json.dumps(settings.data_dir)}\n\n" + accounts_toml(settings.accounts)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def _reach_session(settings: Settings, account: str) -> contextlib.AbstractContextManager[Client]:
    """A client that reaches the account's session actor (see ``launcher.reach``).

    Raises UsageError for an account that is not configured.
    """
    from actors import session_actors

    ((address, factory),) = session_actors(settings, [account]).items()
    return reach(settings, address, factory)


def _split(items: str) -> list[str]:
    return [item.strip() for item in items.split(",") if item.strip()]


def _status(settings: Settings, args: argparse.Namespace) -> int:
    with client_for(settings) as client:
        try:
            status = client.request("broker", GetStatus(), timeout=args.timeout)
        except RequestError as exc:
            print(
                f"error: no status from {settings.runtime.broker_endpoint}: {exc}", file=sys.stderr
            )
            return 1
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
    lines += ["", "peers:"]
    for p in status.peers:
        deny = f"; never {', '.join(p.deny)}" if p.deny else ""
        lines.append(
            f"  {p.name:<16} speaks as {', '.join(p.names) or '-'}; "
            f"sends to {', '.join(p.send_to) or 'nothing'}{deny}"
        )
    return "\n".join(lines)


def _call(settings: Settings, args: argparse.Namespace) -> int:
    """Send one request; its body is JSON given inline, on stdin (``-``) or in ``@FILE``."""
    text: str = args.message
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            return _fail(f"cannot read {text[1:]}: {exc.strerror}", 2)
    try:
        body = body_from_json(text)
    except FrameError as exc:
        return _fail(exc.reason, 2)
    with client_for(settings) as client:
        try:
            reply = client.request(
                args.address, body, timeout=args.timeout, idempotency_key=args.idempotency_key
            )
        except RequestError as exc:
            print(body_to_json(exc.error).decode())
            return 1
    print(body_to_json(reply).decode())
    return 0


def _login(settings: Settings, args: argparse.Namespace) -> int:
    """Log an account in through its session actor (the one owner of its session)."""
    address = session_address(args.account)
    with _reach_session(settings, args.account) as client:
        status = _settled_status(client, address)
        if status.authorized and status.user is not None:
            print(f"{args.account} is logged in as {_who(status.user)}")
            return 0
        if settings.accounts[args.account].kind == "bot":
            why = status.reason or status.state
            return _fail(
                f"bot {args.account} did not log in: {why} "
                f"(a bot logs in with accounts.{args.account}.bot_token, as BotFather gave it)",
                1,
            )
        if args.qr:
            user = _qr_login(client, address)
        else:
            phone = args.phone or settings.accounts[args.account].phone
            user = _code_login(client, address, phone or input("phone number: ").strip())
    if user is None:
        return 1
    print(f"logged in as {_who(user)}")
    return 0


def _settled_status(client: Client, address: str) -> SessionStatus:
    """The session's status once it has connected and knows whether it is authorized."""
    for _ in range(60):
        status = client.request(address, GetSessionStatus(), timeout=10)
        if status.state in ("authorized", "unauthorized", "failed"):
            return status
        time.sleep(0.5)
    raise RequestError(Timeout(message=f"{address} did not connect (state {status.state})"))


def _code_login(client: Client, address: str, phone: str) -> User:
    sent = client.request(address, StartLogin(phone=phone), timeout=60)
    code = input(f"login code sent to {phone} ({sent.via or 'app'}): ").strip()
    reply = client.request(address, SubmitCode(code=code), timeout=60)
    if isinstance(reply, PasswordNeeded):
        return _password_login(client, address, reply.hint)
    return reply.user


def _password_login(client: Client, address: str, hint: str) -> User:
    """The two-step verification step, after a code or a scanned QR code."""
    shown = f" (hint: {hint})" if hint else ""
    password = getpass.getpass(f"2FA password{shown}: ")
    return client.request(address, SubmitPassword(password=password), timeout=60).user


def _qr_login(client: Client, address: str) -> User | None:
    from actors.qr import to_terminal

    for _ in range(_QR_ATTEMPTS):
        qr = client.request(address, StartQrLogin(), timeout=60)
        print(to_terminal(qr.url), end="")
        # Flushed: a pipe (tee, a test) must see the code while this waits for the scan.
        print(
            f"Scan with Telegram (Settings > Devices > Link Desktop Device), or open {qr.url}",
            flush=True,
        )
        while time.time() < qr.expires_at + 1:
            state = client.request(address, QrLoginStatus(), timeout=10)
            if state.state == "done":
                return state.user
            if state.state == "password_needed":
                return _password_login(client, address, state.hint)
            if state.state == "expired":
                break
            time.sleep(1.0)
        print("the QR code expired; here is a new one")
    print(f"error: not scanned after {_QR_ATTEMPTS} codes", file=sys.stderr)
    return None


def _who(user: User) -> str:
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    handle = f" @{user.username}" if user.username else ""
    return f"{name}{handle} (id {user.id})"


def _export_session(settings: Settings, args: argparse.Namespace) -> int:
    """Print the account's StringSession (only if the operator is allowed to export it)."""
    with _reach_session(settings, args.account) as client:
        reply = client.request(session_address(args.account), ExportSession(), timeout=30)
    print(reply.session_string)
    return 0


def _import_session(settings: Settings, args: argparse.Namespace) -> int:
    """Write the account's session file from a StringSession read from stdin."""
    from telethon.sessions import StringSession

    from actors import session_actors
    from actors.session import open_session_file, session_path

    session_actors(settings, [args.account])  # raises UsageError for an unknown account
    account = settings.account(args.account)
    if account.session_string:
        print(f"error: {args.account} uses session_string, not a session file", file=sys.stderr)
        return 2
    try:
        source = StringSession(sys.stdin.read().strip())
    except ValueError:
        print("error: stdin does not hold a valid StringSession", file=sys.stderr)
        return 2
    path = session_path(args.account, account, settings.data_dir)
    if path.exists() and not args.force:
        print(f"error: {path} exists (use --force to replace it)", file=sys.stderr)
        return 2
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with SessionFileLock(path):
        path.unlink(missing_ok=True)
        target = open_session_file(path)
        target.set_dc(source.dc_id, source.server_address, source.port)
        target.auth_key = source.auth_key
        target.save()
        target.close()
    print(f"wrote {path} (mode 0600)")
    return 0


def _curve_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Print a new key pair as two switchboard.toml blocks, one per kind of host; with
    ``--name``, write this host's own pair and print what each side configures."""
    if args.name is not None:
        return _peer_keys(settings, args.name)
    public, secret = curve.new_key_pair()
    # Z85 has neither quotes nor backslashes: a TOML basic string holds a key as it is.
    print(
        "# switchboard.toml on the broker's host only (keep this file private, mode 0600);\n"
        "# if the file has a [runtime] table already, add the line to it\n"
        f'[runtime]\ncurve_secret_key = "{secret}"\n\n'
        "# switchboard.toml on every other host (nodes, clients, run.py status there)\n"
        f'[runtime]\ncurve_server_key = "{public}"'
    )
    return 0


def _peer_keys(settings: Settings, name: str) -> int:
    if not re.fullmatch(ACCOUNT_NAME_PATTERN, name):
        raise UsageError(f"--name {name!r}: use lowercase letters, digits, _ and - only")
    try:
        public_file, secret_file = curve.write_key_pair(Path(settings.data_dir) / "keys", name)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    public, _ = curve.load_key_pair(secret_file)
    print(
        f"wrote {public_file} and {secret_file} (mode 0600)\n\n"
        "# switchboard.toml on this host (and the broker's public key, curve_server_key)\n"
        f'[runtime]\ncurve_key_file = "{secret_file.absolute()}"\n\n'
        "# switchboard.toml on the broker's host (or copy the .key file into its\n"
        "# runtime.curve_clients_dir); names: what it may speak as\n"
        f'[peers.{name}]\npublic_key = "{public}"\nnames = ["{name}", "{name}:*"]\n'
        "# what its requests may reach; the broker alone answers run.py status\n"
        'send_to = ["broker"]'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
