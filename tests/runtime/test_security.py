"""Security of the runtime with real processes: who may reach the broker at all."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import demo, errors, session
from protocols.base import Message
from protocols.events import actor_topic
from runtime.auth import fingerprint
from runtime.client import Client, Subscriber
from runtime.curve import load_key_pair, new_key_pair
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import System, wait_until

# Run as another Unix user: the system's own Python (the test's may live under /root).
_AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__)
else:
    print("connected")
"""


@pytest.fixture
def local_system() -> Iterator[System]:
    """A system on the default endpoints, in a directory every user may traverse (so
    that only the data dir's own permissions keep others out)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as another user")
    tmp = Path(tempfile.mkdtemp(prefix="sb-sec-", dir="/tmp"))
    tmp.chmod(0o755)
    system = System(tmp, transport="ipc")
    yield system
    system.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)


def _connect_as_nobody(path: str) -> str:
    done = subprocess.run(
        [*_AS_NOBODY, "/usr/bin/python3", "-c", _CONNECT, path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_default_endpoints_admit_only_this_user(local_system: System) -> None:
    system = local_system
    system.run_broker()
    start_node(system, "n1")
    # This user: nodes, clients and the operator commands all find the default endpoints.
    with system.client() as client:
        assert client.request("echo", demo.Echo(text="hi"), timeout=10) == demo.Echoed(text="hi")
    assert system.owner_of("echo") == "n1"

    sockets = system.tmp / "data" / "sockets"
    assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
    paths = [e.removeprefix("ipc://") for e in (system.broker, system.events_in, system.events_out)]
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(path)  # the owner gets through
        assert _connect_as_nobody(path) == "PermissionError"
    # Each layer holds on its own: with the directory opened up, the sockets' modes still
    # keep another user out.
    sockets.chmod(0o711)
    for path in paths:
        assert _connect_as_nobody(path) == "PermissionError"


def test_secrets_at_rest_are_tightened_at_start_or_refused(system: System) -> None:
    data = system.tmp / "data"
    sessions = data / "sessions"
    sessions.mkdir(parents=True)
    data.chmod(0o755)
    sessions.chmod(0o755)
    stored = sessions / "a.session"
    configured = system.tmp / "elsewhere.session"
    for path in (stored, configured):
        path.write_bytes(b"not really a session")
        path.chmod(0o644)
    api_hash = "0123456789abcdef0123456789abcdef"
    system.overrides.update(
        {
            "SWITCHBOARD__TELEGRAM__API_ID": "1",
            "SWITCHBOARD__TELEGRAM__API_HASH": api_hash,
            "SWITCHBOARD__ACCOUNTS__B__SESSION_FILE": str(configured),
        }
    )
    broker = system.run_broker()
    for path, mode in ((data, 0o700), (sessions, 0o700), (stored, 0o600), (configured, 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    tightened = {
        e["path"] for e in broker.log_events() if e.get("event") == "permissions tightened"
    }
    assert tightened == {str(data), str(sessions), str(stored), str(configured)}
    assert api_hash not in broker.log_text()
    broker.stop()

    # A loose file another user owns is not ours to take over: refused, named, exit 2.
    stored.chmod(0o644)
    os.chown(stored, 65534, 65534)
    done = system.command("status", "--timeout", "1")
    assert done.returncode == 2, done.stderr
    assert f"error: {stored} holds secrets and is open to other users" in done.stderr
    assert "uid 65534" in done.stderr
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644


def test_curve_serves_known_keys_only_each_as_its_own_names(system: System) -> None:
    public, secret = new_key_pair()
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = secret
    # A peer's pair as `run.py curve-keys --name` writes it; the broker admits the public
    # halves in its certificate directory (the secret half is skipped there).
    made = system.command("curve-keys", "--name", "bothost")
    assert made.returncode == 0, made.stderr
    keys = system.tmp / "data" / "keys"
    assert stat.S_IMODE((keys / "bothost.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_CLIENTS_DIR"] = str(keys)
    (system.tmp / "switchboard.toml").write_text('[peers.bothost]\nsend_to = ["echo"]\n')
    broker = system.run_broker()
    start_node(system, "n1")  # on the broker's host: the broker's own pair, a local peer
    known = load_key_pair(keys / "bothost.key_secret")
    stranger = new_key_pair()

    def dial(identity: str, pair: tuple[str, str]) -> Client:
        return Client(
            system.broker, identity=identity, curve_server_key=public, curve_key_pair=pair
        )

    with dial("bothost:1", known) as client:
        assert client.request("echo", demo.Echo(text="hi"), timeout=10) == demo.Echoed(text="hi")
    # Known key, another name: refused, whatever identity it picks.
    for identity in ("operator:x", "client:1", "n1"):
        with dial(identity, known) as impostor:
            with pytest.raises(RequestError) as caught:
                impostor.request("echo", demo.Echo(text="as someone else"), timeout=10)
            assert isinstance(caught.value.error, errors.Unauthorized)
            assert f"may not speak as {identity!r}" in caught.value.error.message
    # Unknown key: never served, not even refused.
    with dial("bothost:2", stranger) as outsider:
        with pytest.raises(RequestError) as caught:
            outsider.request("echo", demo.Echo(text="let me in"), timeout=1.0)
        assert isinstance(caught.value.error, errors.Timeout)
    refused = [e for e in broker.log_events() if e.get("event") == "unknown CURVE key refused"]
    assert refused and {e["fingerprint"] for e in refused} == {fingerprint(stranger[0])}
    assert stranger[0] not in broker.log_text()

    # The bus admits the same peers: both subscribe, a crash is published, only the known
    # key's subscriber hears of it.
    def listen(pair: tuple[str, str]) -> Subscriber:
        return Subscriber(
            system.events_out, [actor_topic()], curve_server_key=public, curve_key_pair=pair
        )

    with listen(known) as heard, listen(stranger) as deaf, dial("bothost:3", known) as client:
        wait_until(lambda: _crash_heard(client, heard), 20, "an event for the known key")
        assert deaf.receive(1.0) is None


def _crash_heard(client: Client, events: Subscriber) -> bool:
    with pytest.raises(RequestError):
        client.request("echo", demo.Fail(), timeout=10)
    return events.receive(2.0) is not None


def test_remote_peer_may_send_only_what_its_rules_allow(system: System) -> None:
    public, secret = new_key_pair()
    api_host = new_key_pair()
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = secret
    (system.tmp / "switchboard.toml").write_text(
        f'[peers.apihost]\npublic_key = "{api_host[0]}"\n'
        'send_to = ["session:a", "broker"]\ndeny = ["ExportSession"]\n'
    )
    broker = system.run_broker()
    # Stand-ins at the session addresses: whatever reaches them is answered by them.
    start_node(system, "n1", "echo=session:a,echo=session:b")

    # A fresh identity per client: the broker's ROUTER ignores a connection under the
    # identity of one it has not yet seen close (no handover), and the ask times out.
    clients = itertools.count(1)

    def ask(target: str, body: Message, pair: tuple[str, str] = api_host) -> Message:
        """The reply or the error, as ``pair``'s peer (``apihost`` by default)."""
        identity = f"apihost:{next(clients)}" if pair == api_host else None
        with Client(
            system.broker, identity=identity, curve_server_key=public, curve_key_pair=pair
        ) as client:
            try:
                return client.request(target, body, timeout=10)
            except RequestError as exc:
                return exc.error

    assert ask("session:a", demo.Echo(text="hi")) == demo.Echoed(text="hi")
    refused = ask("session:b", demo.Echo(text="hi"))
    assert isinstance(refused, errors.Unauthorized)
    assert "peers.apihost.send_to does not include 'session:b'" in refused.message
    refused = ask("session:a", session.ExportSession())
    assert isinstance(refused, errors.Unauthorized)
    assert "peers.apihost.deny lists ExportSession" in refused.message
    rules = [e["rule"] for e in broker.log_events() if e.get("event") == "request refused"]
    assert len(rules) == 2
    # This host's own operator (the broker's pair) may still do everything.
    reply = ask("session:b", session.ExportSession(), (public, secret))
    assert isinstance(reply, errors.BadRequest)  # reached the actor: it is no session

    shown = {p.name: p for p in system.status().peers}
    assert shown["apihost"].send_to == ["session:a", "broker"]
    assert shown["apihost"].deny == ["ExportSession"]
    assert shown["local"].send_to == ["*"]
    text = system.command("status").stdout
    assert "apihost" in text and "never ExportSession" in text


def test_whole_system_in_one_process_with_curve(system: System) -> None:
    """Its node reaches the broker over inproc, which carries no user id: a local peer."""
    public, secret = new_key_pair()
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = secret
    whole = system.run("--actors", "echo", "--accounts", "", name="all")
    with Client(system.broker, curve_server_key=public, curve_key_pair=(public, secret)) as c:
        wait_until(lambda: _echoes(c) or whole.popen.poll() is not None, 30, "echo to answer")
        assert whole.popen.poll() is None, whole.log_text()


def _echoes(client: Client) -> bool:
    try:
        return client.request("echo", demo.Echo(text="hi"), timeout=2) == demo.Echoed(text="hi")
    except RequestError:
        return False
