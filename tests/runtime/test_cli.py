"""``run.py`` answers wrong arguments and wrong configuration with a clear error, at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.runtime.conftest import start_node
from tests.runtime.support import REPO, Proc, System, wait_until


def test_unknown_actor_kind(system: System) -> None:
    done = system.command("--actors", "nope")
    assert done.returncode == 2
    assert "unknown actor kind 'nope' (known: " in done.stderr
    assert "echo" in done.stderr and "store" in done.stderr
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


def test_call_reads_the_body_from_stdin_or_a_file(system: System, broker: Proc) -> None:
    start_node(system, "n1")
    done = system.command("call", "echo", "-", input='{"type": "Echo", "text": "from stdin"}')
    assert (done.returncode, done.stdout.strip()) == (0, '{"type":"Echoed","text":"from stdin"}')
    body = system.tmp / "body.json"
    body.write_text('{"type": "Echo", "text": "from a file"}')
    done = system.command("call", "echo", f"@{body}")
    assert (done.returncode, done.stdout.strip()) == (0, '{"type":"Echoed","text":"from a file"}')


def test_call_with_a_missing_body_file(system: System) -> None:
    done = system.command("call", "echo", "@nowhere.json")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: cannot read nowhere.json: No such file or directory"


def test_call_refuses_unknown_fields_by_name(system: System) -> None:
    done = system.command("call", "echo", '{"type": "Echo", "txt": "hi", "loud": true}')
    assert done.returncode == 2
    assert done.stderr.strip() == "error: Echo has no fields 'loud', 'txt' (its fields: text)"


@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_call_refuses_a_timeout_that_is_not_positive(system: System, value: str) -> None:
    done = system.command("call", "echo", '{"type": "Echo"}', f"--timeout={value}")
    assert done.returncode == 2
    assert "argument --timeout: " in done.stderr and "Traceback" not in done.stderr


def test_call_help_lists_the_message_types(system: System) -> None:
    done = system.command("call", "--help")
    assert done.returncode == 0
    assert "message types" in done.stdout
    for entry in ("GetStatus", "FetchHistory(peer, limit, offset_id, min_id)", "Echo(text)"):
        assert entry in done.stdout


def test_help_shows_the_roles_and_standby(system: System) -> None:
    done = system.command("--help")
    assert done.returncode == 0
    for text in ("--role broker", "--role node", "--standby", "Exit codes"):
        assert text in done.stdout


def test_a_closed_pipe_is_not_a_traceback(system: System, broker: Proc) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (`| head -0`)
    try:
        done = subprocess.run(
            [sys.executable, str(REPO / "run.py"), "status"],
            cwd=system.tmp,
            env=system.env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""


def test_the_readme_multi_process_example(system: System, broker: Proc) -> None:
    # A node hosts nothing unless told, so a later --actors echo is not refused.
    first = start_node_hosting_nothing(system, "n1")
    start_node(system, "n3", "echo")
    assert system.owner_of("echo") == "n3"
    standby = start_node(system, "n2", "echo", "--standby")
    assert first.popen.poll() is None and standby.popen.poll() is None


def start_node_hosting_nothing(system: System, node_id: str) -> Proc:
    """``run.py --role node --node-id ID`` as the README writes it, once it registered."""
    proc = system.run("--role", "node", "--node-id", node_id, name=node_id)
    wait_until(
        lambda: node_id in {n.node_id for n in system.status().nodes}, 30, f"{node_id} to join"
    )
    return proc
