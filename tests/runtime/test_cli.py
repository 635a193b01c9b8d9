"""``run.py`` answers wrong arguments and wrong configuration with a clear error, at once."""

from __future__ import annotations

from tests.runtime.support import System


def test_unknown_actor_kind(system: System) -> None:
    done = system.command("--actors", "nope")
    assert done.returncode == 2
    assert "unknown actor kind 'nope' (known: echo)" in done.stderr
    assert not (system.tmp / "data").exists()  # nothing was started


def test_unknown_account(system: System) -> None:
    done = system.command("--role", "node", "--accounts", "ghost")
    assert done.returncode == 2
    assert "account 'ghost' is not configured" in done.stderr


def test_wrong_configuration_names_the_key(system: System) -> None:
    (system.tmp / "switchboard.toml").write_text("[runtime]\nmailbox_size = 'lots'\n")
    done = system.command("status")
    assert done.returncode == 2
    assert "switchboard.toml: runtime.mailbox_size: expected int" in done.stderr


def test_call_with_an_unknown_message_type(system: System) -> None:
    done = system.command("call", "echo", '{"type": "Nope"}')
    assert done.returncode == 2
    assert "unknown message type 'Nope'" in done.stderr


def test_call_with_malformed_json(system: System) -> None:
    done = system.command("call", "echo", "{not json")
    assert done.returncode == 2
    assert "malformed JSON" in done.stderr


def test_status_without_a_broker_says_so(system: System) -> None:
    done = system.command("status", "--timeout", "0.5")
    assert done.returncode == 1
    assert f"no status from {system.broker}" in done.stderr
