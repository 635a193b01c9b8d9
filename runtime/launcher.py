"""From settings to running parts: the broker, a node and its actors, for each role.

``run.py`` is the command line over this module; tests and embedding programs use it to
start the same parts the same way.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import structlog
import zmq

from config import Secret, Settings
from config.settings import ENDPOINT_FIELDS
from protocols.broker import GetStatus, Status
from runtime import curve
from runtime.actor import ActorFactory
from runtime.auth import Peer
from runtime.broker import Broker, BrokerOptions
from runtime.client import Client
from runtime.errors import EndpointError, RequestError, UsageError
from runtime.node import Node, NodeOptions
from runtime.router import BROKER_ADDRESS
from runtime.supervisor import RestartPolicy

log = structlog.get_logger("launcher")

# In one process, nodes reach the broker over inproc (same ZeroMQ context, no syscalls);
# the configured endpoints stay bound for outside clients and ``run.py status``.
LOCAL_BROKER = "inproc://switchboard/local-broker"
LOCAL_EVENTS_IN = "inproc://switchboard/local-events-in"
LOCAL_EVENTS_OUT = "inproc://switchboard/local-events-out"
# In the data dir: which addresses the broker granted to other processes (see Broker).
BROKER_STATE_FILE = "broker-leases"


def broker_options(settings: Settings, *, local: bool = False) -> BrokerOptions:
    """The broker's options; with ``local`` it also binds the in-process endpoints."""
    rt = settings.runtime
    endpoints = [rt.broker_endpoint]
    events_in = [rt.events_in_endpoint]
    events_out = [rt.events_out_endpoint]
    if local:
        endpoints += [e for e in [LOCAL_BROKER] if e != rt.broker_endpoint]
        events_in += [e for e in [LOCAL_EVENTS_IN] if e != rt.events_in_endpoint]
        events_out += [e for e in [LOCAL_EVENTS_OUT] if e != rt.events_out_endpoint]
    return BrokerOptions(
        endpoints=endpoints,
        events_in=events_in,
        events_out=events_out,
        heartbeat_interval_s=rt.heartbeat_interval_s,
        heartbeat_liveness=rt.heartbeat_liveness,
        max_frame_bytes=rt.max_frame_bytes,
        curve_secret_key=_reveal(rt.curve_secret_key),
        curve_peers=admitted_keys(settings),
        peers={
            name: Peer(name, tuple(p.names), tuple(p.send_to), tuple(p.deny))
            for name, p in settings.peers.items()
        },
        state_file=str(Path(settings.data_dir) / BROKER_STATE_FILE),
    )


def admitted_keys(settings: Settings) -> dict[str, str]:
    """{public key: peer name} of the peers admitted over CURVE: ``[peers]`` and the
    certificates in ``runtime.curve_clients_dir``. Raises UsageError for a bad file."""
    keys: dict[str, str] = {}
    directory = settings.runtime.curve_clients_dir
    if directory is not None:
        try:
            keys.update(curve.load_public_keys(directory))
        except ValueError as exc:
            raise UsageError(f"runtime.curve_clients_dir: {exc}") from None
    keys.update({p.public_key: name for name, p in settings.peers.items() if p.public_key})
    return keys


def peer_name(settings: Settings) -> str | None:
    """This host's peer name over CURVE: its key file's NAME, None on the broker's host."""
    key_file = settings.runtime.curve_key_file
    return None if key_file is None else Path(key_file).name.split(".")[0]


def use_curve_identity(settings: Settings) -> str | None:
    """Set this process's CURVE key pair (see runtime.curve) and return its peer name:
    ``runtime.curve_key_file``'s, or None for the broker's own pair (a local peer).
    Raises UsageError for a key file that cannot be loaded."""
    rt = settings.runtime
    if rt.curve_key_file is not None:
        try:
            curve.use_identity(curve.load_key_pair(rt.curve_key_file))
        except ValueError as exc:
            raise UsageError(f"runtime.curve_key_file: {exc}") from None
        return peer_name(settings)
    if rt.curve_secret_key is not None:
        secret = rt.curve_secret_key.reveal()
        curve.use_identity((curve.public_key(secret), secret))
    return None


def _reveal(secret: Secret | None) -> str | None:
    return secret.reveal() if secret is not None else None


def _broker_public_key(settings: Settings) -> str | None:
    """The broker's CURVE public key: as configured, or derived from its secret key."""
    rt = settings.runtime
    if rt.curve_server_key is not None:
        return rt.curve_server_key.reveal()
    if rt.curve_secret_key is not None:
        return curve.public_key(rt.curve_secret_key.reveal())
    return None


def client_for(settings: Settings, identity: str | None = None) -> Client:
    """A client of the configured broker (with its CURVE key when one is set); without an
    ``identity``, a fresh one under this host's peer name (see `peer_name`)."""
    rt = settings.runtime
    name = peer_name(settings)
    if identity is None and name is not None:
        identity = f"{name}:{uuid.uuid4().hex[:12]}"
    return Client(
        rt.broker_endpoint,
        identity=identity,
        max_frame_bytes=rt.max_frame_bytes,
        curve_server_key=_broker_public_key(settings),
    )


def node_options(settings: Settings, *, local: bool = False, standby: bool = False) -> NodeOptions:
    """The node's options; with ``local`` it reaches an in-process broker over inproc."""
    rt = settings.runtime
    sv = settings.supervision
    return NodeOptions(
        broker=LOCAL_BROKER if local else rt.broker_endpoint,
        events_in=LOCAL_EVENTS_IN if local else rt.events_in_endpoint,
        events_out=LOCAL_EVENTS_OUT if local else rt.events_out_endpoint,
        heartbeat_interval_s=rt.heartbeat_interval_s,
        heartbeat_liveness=rt.heartbeat_liveness,
        mailbox_size=rt.mailbox_size,
        request_timeout_s=rt.request_timeout_s,
        max_frame_bytes=rt.max_frame_bytes,
        restart_policy=RestartPolicy(
            max_restarts=sv.max_restarts,
            within_s=sv.within_s,
            backoff_initial_s=sv.backoff_initial_s,
            backoff_max_s=max(sv.backoff_max_s, sv.backoff_initial_s),
        ),
        standby=standby,
        curve_server_key=_broker_public_key(settings),
    )


def parse_actor_specs(
    specs: list[str], kinds: Mapping[str, ActorFactory]
) -> dict[str, ActorFactory]:
    """``["echo", "echo=echo:2"]`` -> {address: factory}, from the known ``kinds``.

    Raises UsageError naming an unknown actor kind and the known ones.
    """
    hosted: dict[str, ActorFactory] = {}
    for spec in specs:
        kind, _, address = spec.partition("=")
        factory = kinds.get(kind)
        if factory is None:
            known = ", ".join(sorted(kinds))
            raise UsageError(f"unknown actor kind {kind!r} (known: {known})")
        hosted[address or kind] = factory
    return hosted


@contextlib.contextmanager
def reach(settings: Settings, address: str, factory: ActorFactory) -> Iterator[Client]:
    """A client (identity ``operator:…``) that reaches ``address``.

    Through the running system if it hosts the address; otherwise through a broker and a
    node hosting ``factory`` started here for the duration (so the address still has
    exactly one owner). Raises AddressTakenError if another node owns it.
    """
    actors = {address: factory}
    # Another host's operator speaks under that host's peer name, never as a local one.
    name = peer_name(settings)
    operator = "operator" if name is None else f"{name}:operator"
    client = client_for(settings, identity=f"{operator}:{uuid.uuid4().hex[:12]}")
    broker: Broker | None = None
    node: Node | None = None
    try:
        try:
            status = client.request(BROKER_ADDRESS, GetStatus(), timeout=1.0)
        except RequestError:
            status = None
        if not isinstance(status, Status):
            broker = start_broker(settings, local=True)
            node = start_node(settings, actors, local=True)
        elif address not in {a.address for a in status.addresses}:
            node = start_node(settings, actors)
        yield client
    finally:
        client.close()
        if node is not None:
            node.stop()
        if broker is not None:
            broker.stop()


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous: dict[int, Callable[..., object] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def start_broker(settings: Settings, *, local: bool = False) -> Broker:
    """A started broker.

    Raises :class:`runtime.errors.EndpointError` naming the endpoint and its setting when
    one cannot be bound (``in_use`` when another process holds it).
    """
    broker = Broker(broker_options(settings, local=local))
    try:
        broker.start()
    except zmq.ZMQError as exc:
        raise _endpoint_error(settings, exc) from None
    return broker


def check_listen(host: str, port: int, setting: str) -> None:
    """Raise :class:`runtime.errors.EndpointError` unless a TCP server can listen on
    ``host:port`` now (``setting`` is what moves it). Port 0 (any free port) always can."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            # As aiohttp listens: an old connection in TIME_WAIT does not count as in use.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        raise EndpointError(
            f"http://{host}:{port}", setting, exc.strerror or str(exc), in_use=in_use
        ) from None


def _endpoint_error(settings: Settings, exc: zmq.ZMQError) -> EndpointError:
    """The EndpointError for a failed bind; pyzmq's message ends with the endpoint's repr."""
    message = str(exc)
    field = next(
        (f for f in ENDPOINT_FIELDS if f"addr={getattr(settings.runtime, f)!r}" in message),
        ENDPOINT_FIELDS[0],
    )
    endpoint = getattr(settings.runtime, field)
    reason = message.split(" (addr=")[0]
    return EndpointError(endpoint, f"runtime.{field}", reason, in_use=exc.errno == errno.EADDRINUSE)


def start_node(
    settings: Settings,
    actors: Mapping[str, ActorFactory],
    *,
    node_id: str | None = None,
    local: bool = False,
    standby: bool = False,
) -> Node:
    """A started node hosting ``actors``.

    Raises :class:`runtime.errors.AddressTakenError` naming the owner when an address is
    owned elsewhere (unless ``standby``), :class:`runtime.errors.BrokerUnreachableError`
    when no broker answers within ``runtime.request_timeout_s``.
    """
    node = Node(node_options(settings, local=local, standby=standby), node_id=node_id)
    for address, factory in actors.items():
        node.add(address, factory)
    # The broker decides a claim at once; waiting as long as a request may covers a busy one.
    timeout = settings.runtime.request_timeout_s
    try:
        node.start(timeout=timeout)
    except BaseException:
        node.stop()
        raise
    return node
