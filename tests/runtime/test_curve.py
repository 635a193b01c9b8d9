"""CURVE: with a broker key set, only peers that know the broker's public key are served."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocols import demo, errors
from protocols.events import actor_topic
from runtime.client import Client, Subscriber
from runtime.curve import new_key_pair
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import REPO, System, wait_until


def test_encrypted_links_serve_only_peers_with_the_broker_key(system: System) -> None:
    public, secret = new_key_pair()
    # Every process of this system gets the broker's secret; nodes and `run.py status`
    # derive the public key from it, as on the broker's own host.
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = secret
    broker = system.run_broker()
    start_node(system, "sealed")
    assert system.owner_of("echo") == "sealed"

    with Client(system.broker, curve_server_key=public) as trusted:
        assert trusted.request("echo", demo.Echo(text="hi"), timeout=10) == demo.Echoed(text="hi")
        with Subscriber(system.events_out, [actor_topic()], curve_server_key=public) as events:
            wait_until(lambda: _crash_seen(trusted, events), 20, "an event over CURVE")

    stranger_key, _ = new_key_pair()
    for key in (None, stranger_key):
        with Client(system.broker, curve_server_key=key) as outsider:
            with pytest.raises(RequestError) as caught:
                outsider.request("echo", demo.Echo(text="let me in"), timeout=1.0)
            assert isinstance(caught.value.error, errors.Timeout)
    assert broker.popen.poll() is None


def _crash_seen(client: Client, events: Subscriber) -> bool:
    with pytest.raises(RequestError):
        client.request("echo", demo.Fail(), timeout=10)
    return events.receive(2.0) is not None


def test_curve_keys_prints_blocks_to_paste_into_switchboard_toml(system: System) -> None:
    done = system.command("curve-keys")
    assert done.returncode == 0
    broker_block, other_block = done.stdout.strip().split("\n\n")
    assert "curve_secret_key" in broker_block and "curve_secret_key" not in other_block
    # The broker's host pastes the first block; another host (here: another directory),
    # the second, and `run.py status` there gets through the encrypted link.
    (system.tmp / "switchboard.toml").write_text(broker_block + "\n")
    system.run_broker()
    elsewhere = system.tmp / "other-host"
    elsewhere.mkdir()
    (elsewhere / "switchboard.toml").write_text(other_block + "\n")
    status = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "status", "--json"],
        cwd=elsewhere,
        env=system.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    # Without the key the same command gets no answer.
    (elsewhere / "switchboard.toml").unlink()
    denied = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "status", "--timeout", "1"],
        cwd=elsewhere,
        env=system.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.returncode == 1
