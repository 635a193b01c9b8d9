"""Whatever an operator can get wrong ends in one clear line on stderr and a documented exit
code (run.py's docstring), never a traceback.

Every test runs the real ``run.py`` (or ``python -m sandbox``) the way an operator does.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.runtime.support import REPO, System, free_port, wait_until

# Exit codes documented in run.py.
FAILED, BAD_CONFIG, HELD, INTERRUPTED = 1, 2, 3, 130


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    sys_ = System(tmp_path)
    yield sys_
    sys_.stop_all()


def one_error_line(stderr: str) -> str:
    """The one line an operator reads; asserts there is no traceback and nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_endpoint_in_use_names_it_and_the_setting(tmp_path: Path) -> None:
    system = System(tmp_path, transport="tcp")  # a tcp port another program holds
    host, port = system.events_out.removeprefix("tcp://").split(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        done = system.command("--role", "broker")
    assert done.returncode == HELD
    line = one_error_line(done.stderr)
    assert f"cannot bind {system.events_out}: Address already in use" in line
    assert "runtime.events_out_endpoint" in line
    assert "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT" in line


def test_api_port_in_use_names_the_setting(system: System) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        system.overrides["SWITCHBOARD__API__PORT"] = str(port)
        done = system.command()
    assert done.returncode == HELD
    line = one_error_line(done.stderr)
    assert f"cannot bind http://127.0.0.1:{port}: Address already in use" in line
    assert "api.port" in line and "SWITCHBOARD__API__PORT" in line
    assert not (system.tmp / "data" / "sandbox").exists()  # nothing was started


def test_a_second_broker_on_the_same_endpoints(system: System) -> None:
    system.run_broker()
    done = system.command("--role", "broker")
    assert done.returncode == HELD
    assert f"cannot bind {system.broker}" in one_error_line(done.stderr)


def test_endpoint_of_no_interface_of_this_host(system: System) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never assigned to a host.
    endpoint = f"tcp://192.0.2.1:{free_port()}"
    system.overrides["SWITCHBOARD__RUNTIME__BROKER_ENDPOINT"] = endpoint
    done = system.command("--role", "broker")
    assert done.returncode == BAD_CONFIG
    line = one_error_line(done.stderr)
    assert f"cannot bind {endpoint}: Cannot assign requested address" in line
    assert "runtime.broker_endpoint" in line


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1", "localhost:7750", "tcp://*:99999"])
def test_malformed_endpoint(system: System, endpoint: str) -> None:
    system.overrides["SWITCHBOARD__RUNTIME__BROKER_ENDPOINT"] = endpoint
    done = system.command("--role", "broker")
    assert done.returncode == BAD_CONFIG
    line = one_error_line(done.stderr)
    assert line.startswith("configuration error: SWITCHBOARD__RUNTIME__BROKER_ENDPOINT: ")
    assert "runtime.broker_endpoint: " in line


def test_node_started_before_its_broker(system: System) -> None:
    system.overrides["SWITCHBOARD__RUNTIME__REQUEST_TIMEOUT_S"] = "1"
    done = system.command("--role", "node", "--actors", "echo")
    assert done.returncode == FAILED
    line = one_error_line(done.stderr)
    assert f"no broker answered at {system.broker} within 1s" in line
    assert "run.py --role broker" in line


def test_ctrl_c_during_start_up(system: System) -> None:
    # With no broker the node is still starting (for a minute) once it has logged anything.
    system.overrides["SWITCHBOARD__RUNTIME__REQUEST_TIMEOUT_S"] = "60"
    node = system.run("--role", "node", "--actors", "echo", name="node")
    wait_until(lambda: any(node.log_events()), 30, "the node to say something")
    assert not node.has_logged("running; Ctrl-C to stop")
    node.signal(signal.SIGINT)
    assert node.popen.wait(30) == INTERRUPTED
    assert one_error_line(node.log_text()) == "error: interrupted"


def test_second_whole_system_on_the_same_data_dir_exits_at_once_naming_the_first(
    system: System,
) -> None:
    # `--accounts ""`: the whole system without the demo (which has its own sandbox lock).
    first = system.run("--accounts", "", name="first")
    wait_until(lambda: first.has_logged("running; Ctrl-C to stop"), 60, "the system to run")
    other = System(system.tmp)  # other endpoints, the same working and data directory
    done = other.command("--accounts", "", timeout=60)
    assert done.returncode == HELD
    line = one_error_line(done.stderr)
    assert line.startswith("error: another run.py runs the whole system on data (pid ")
    assert f"(pid {first.pid} on " in line
    assert first.popen.poll() is None  # the first one carries on


def test_second_sandbox_on_the_same_data_dir(tmp_path: Path) -> None:
    def sandbox() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--data-dir", str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = sandbox()
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("sandbox MTProto port")
        second = sandbox()
        _, err = second.communicate(timeout=60)
        assert second.returncode == HELD
        line = one_error_line(err)
        assert f"another sandbox runs on this data directory: Can't lock file {tmp_path}" in line
        assert f"in use by pid {first.pid}" in line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def configure_alice(
    system: System, *, server: bool = False, public_key_file: Path | None = None
) -> None:
    """Account alice, on a custom server if ``server`` (with ``public_key_file`` if given)."""
    lines = ["[accounts.alice]", "api_id = 1", 'api_hash = "0123456789abcdef"']
    if server:
        lines += ["[accounts.alice.server]", 'host = "127.0.0.1"', "port = 4430"]
    if public_key_file is not None:
        lines.append(f'public_key_file = "{public_key_file}"')
    (system.tmp / "switchboard.toml").write_text("\n".join(lines) + "\n")


def test_invalid_session_string_is_refused_at_start(system: System) -> None:
    configure_alice(system)
    broken = "1" + "A" * 200
    system.overrides["SWITCHBOARD__ACCOUNTS__ALICE__SESSION_STRING"] = broken
    done = system.command("--role", "node", "--accounts", "alice")
    assert done.returncode == BAD_CONFIG
    line = one_error_line(done.stderr)
    assert "accounts.alice.session_string: not a valid StringSession" in line
    assert broken not in done.stderr


def test_custom_server_without_a_key(system: System) -> None:
    configure_alice(system, server=True)
    done = system.command("--role", "node", "--accounts", "alice")
    assert done.returncode == BAD_CONFIG
    line = one_error_line(done.stderr)
    assert "accounts.alice.server.public_key_file: a custom server needs its RSA public key" in line


def test_missing_server_key_file(system: System) -> None:
    missing = system.tmp / "nowhere.pem"
    configure_alice(system, server=True, public_key_file=missing)
    done = system.command("--role", "node", "--accounts", "alice")
    assert done.returncode == BAD_CONFIG
    line = one_error_line(done.stderr)
    assert f"public_key_file: cannot read {missing}: No such file or directory" in line


def test_server_key_file_that_is_not_rsa(system: System) -> None:
    key = system.tmp / "ec.pem"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    configure_alice(system, server=True, public_key_file=key)
    done = system.command("--role", "node", "--accounts", "alice")
    assert done.returncode == BAD_CONFIG
    assert f"{key} holds an ECPublicKey, not an RSA public key" in one_error_line(done.stderr)
