"""Per-peer permissions with real session actors against the sandbox: a remote peer's
refused request never reaches Telegram; the host's own operator still exports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import errors
from protocols import session as s
from runtime.client import Client
from runtime.curve import load_key_pair, new_key_pair
from runtime.errors import RequestError
from sandbox import SandboxThread
from tests.session.conftest import Sessions


@pytest.fixture
def sessions(tmp_path: Path, sandbox: SandboxThread) -> Iterator[Sessions]:
    """On tcp: a remote peer reaches the broker from another host."""
    system = Sessions(tmp_path, sandbox=sandbox, transport="tcp")
    system.write_config()
    yield system
    system.stop_all()


def test_remote_peer_refused_before_telegram_local_operator_exports(sessions: Sessions) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    public, secret = new_key_pair()
    bot_a = sessions.add_bot("a", export_allowed='["operator:*", "apihost:*"]')
    bot_b = sessions.add_bot("b")
    carol = control.create_user("+14449990001", "Carol", username="carol_security")

    # Another host: its own pair, the broker's public key, the same accounts.
    elsewhere = sessions.tmp / "apihost"
    elsewhere.mkdir()
    made = sessions.command("curve-keys", "--name", "apihost", cwd=elsewhere, timeout=30)
    assert made.returncode == 0, made.stderr
    key_file = elsewhere / "data" / "keys" / "apihost.key_secret"
    api_host = load_key_pair(key_file)
    (elsewhere / "switchboard.toml").write_text(
        f'data_dir = "{elsewhere / "data"}"\n[runtime]\ncurve_server_key = "{public}"\n'
        f'curve_key_file = "{key_file}"\n\n' + "\n".join(sessions.accounts.values()) + "\n"
    )
    # The broker's host: its secret key (so its processes are local) and apihost's rules.
    sessions.accounts["~security"] = (
        f'[runtime]\ncurve_secret_key = "{secret}"\n\n[peers.apihost]\n'
        f'public_key = "{api_host[0]}"\nsend_to = ["session:a", "broker"]\n'
        'deny = ["ExportSession"]'
    )
    sessions.write_config()
    sessions.run_broker()
    sessions.node("n1", "a,b")
    with Client(sessions.broker, curve_server_key=public, curve_key_pair=(public, secret)) as op:
        sessions.wait_state(op, "a", "authorized")
        sessions.wait_state(op, "b", "authorized")
    sends_before = control.calls("messages.sendMessage")

    with Client(
        sessions.broker, identity="apihost:1", curve_server_key=public, curve_key_pair=api_host
    ) as remote:
        me = remote.request("session:a", s.GetMe(), timeout=10)
        assert me.user.id == bot_a.id
        for target, body in (
            ("session:b", s.SendMessage(peer=carol.id, text="not from you")),
            ("session:a", s.ExportSession()),
        ):
            try:
                remote.request(target, body, timeout=10, idempotency_key=f"k-{target}")
            except RequestError as exc:
                assert isinstance(exc.error, errors.Unauthorized), exc.error
            else:
                raise AssertionError(f"{type(body).__name__} to {target} was served")
    assert control.calls("messages.sendMessage") == sends_before
    assert control.outbox(bot_b.id) == []

    # export-session: the broker's host's operator may; apihost's operator may not.
    exported = sessions.command("export-session", "a")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip()
    remote_export = sessions.command("export-session", "a", cwd=elsewhere, timeout=60)
    assert remote_export.returncode == 1, remote_export.stderr
    assert "peers.apihost.deny lists ExportSession" in remote_export.stderr
    assert remote_export.stdout.strip() == ""
