"""CURVE: with a broker key set, only peers that know the broker's public key and whose
own key the broker knows are served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import demo, errors
from protocols.events import actor_topic
from runtime.client import Client, Subscriber
from runtime.curve import new_key_pair
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import System, wait_until


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """On tcp: CURVE is what the links between hosts use."""
    system = System(tmp_path, transport="tcp")
    yield system
    system.stop_all()


def test_encrypted_links_serve_only_peers_with_the_broker_key(system: System) -> None:
    public, secret = new_key_pair()
    # Every process of this system gets the broker's secret; nodes and `run.py status`
    # derive the public key from it, as on the broker's own host.
    system.overrides["SWITCHBOARD__RUNTIME__CURVE_SECRET_KEY"] = secret
    broker = system.run_broker()
    start_node(system, "sealed")
    assert system.owner_of("echo") == "sealed"

    # The broker's own pair: a process of the broker's host.
    local = (public, secret)
    with Client(system.broker, curve_server_key=public, curve_key_pair=local) as trusted:
        assert trusted.request("echo", demo.Echo(text="hi"), timeout=10) == demo.Echoed(text="hi")
        with Subscriber(
            system.events_out, [actor_topic()], curve_server_key=public, curve_key_pair=local
        ) as events:
            wait_until(lambda: _crash_seen(trusted, events), 20, "an event over CURVE")

    stranger_key, _ = new_key_pair()
    # Without the server key, with a wrong one, or with an unknown key of its own.
    for key in (None, stranger_key, public):
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
    # the second and its own key pair, which the broker's host admits as a peer: `run.py
    # status` there gets through the encrypted link.
    elsewhere = system.tmp / "other-host"
    elsewhere.mkdir()
    peer = system.command("curve-keys", "--name", "other", cwd=elsewhere, timeout=30)
    assert peer.returncode == 0, peer.stderr
    _, own_block, peers_block = peer.stdout.strip().split("\n\n")
    (system.tmp / "switchboard.toml").write_text(broker_block + "\n\n" + peers_block + "\n")
    system.run_broker()
    key_line = own_block.splitlines()[-1]
    (elsewhere / "switchboard.toml").write_text(other_block + "\n" + key_line + "\n")
    status = system.command("status", "--json", cwd=elsewhere, timeout=30)
    assert status.returncode == 0, status.stderr
    # Without the keys the same command gets no answer.
    (elsewhere / "switchboard.toml").unlink()
    denied = system.command("status", "--timeout", "1", cwd=elsewhere, timeout=30)
    assert denied.returncode == 1
