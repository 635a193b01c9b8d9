"""One owner per account: a second owner is refused (broker) or fails fast (file lock).

The seeds' failure was several processes opening one Telethon session file: ``database is
locked``, lost writes, crash loops. Here a second owner never gets that far: another node
on the same broker is refused with the owner named, and a node that the broker cannot
stop (another broker, or a second actor in the same process) fails on the session file's
lock, naming the holder's pid, before it touches the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import session_actors
from actors.session import SessionActor
from config import load_settings
from protocols import errors
from protocols import session as s
from runtime.actor import ActorContext
from runtime.client import Client
from runtime.launcher import start_broker, start_node
from runtime.locks import SessionFileLock, SessionLockedError
from runtime.loop import get_loop_thread
from runtime.node import Node
from sandbox import SandboxThread
from tests.runtime.support import START_S, Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT, log_in, refused


def _me(client: Client, account: str) -> s.User:
    me = client.request(f"session:{account}", s.GetMe(), timeout=CALL_TIMEOUT)
    assert isinstance(me, s.Me)
    return me.user


def _assert_never_locked(*directories: Path) -> None:
    """No log of any process of the test mentions SQLite's ``database is locked``."""
    logs = [p for d in directories for p in d.glob("*.log")]
    assert logs
    for path in logs:
        assert "database is locked" not in path.read_text(errors="replace"), path


def test_second_node_for_the_same_account_is_refused(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    phone, user = sessions.add_user("alice")
    owner = sessions.node("n1", "alice")
    log_in(sessions, client, "alice", phone)

    second = sessions.node("n2", "alice")
    assert second.popen.wait(CALL_TIMEOUT) == 3
    message = second.log_text()
    assert f"session:alice is owned by node n1 (host {os.uname().nodename}, pid {owner.pid}" in (
        message
    )
    assert not second.has_logged("hosting address")

    # The owner never noticed: it still serves, and the broker still names it.
    assert _me(client, "alice").id == user.id
    assert sessions.owner_of("session:alice") == "n1"
    _assert_never_locked(sessions.tmp)


def test_second_lock_on_a_session_file_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "alice.session"
    with SessionFileLock(path) as held:
        assert held.held
        with pytest.raises(SessionLockedError) as caught:
            SessionFileLock(path).acquire()
        assert caught.value.pid == os.getpid()
        assert caught.value.path == path
        assert f"{path}" in str(caught.value) and f"pid {os.getpid()}" in str(caught.value)
    # Released with its holder: the next one gets it.
    with SessionFileLock(path) as again:
        assert again.held


@pytest.fixture
def in_process_node(sessions: Sessions, sandbox: SandboxThread) -> Iterator[tuple[Node, str]]:
    """A broker and a node hosting ``session:alice`` in this process (a user, logged in)."""
    phone, _ = sessions.add_user("alice")
    settings = load_settings(sessions.write_config(), env=sessions.env())
    broker = start_broker(settings)
    node = None
    try:
        node = start_node(settings, session_actors(settings, ["alice"]), node_id="here")
        yield node, phone
    finally:
        if node is not None:
            node.stop()
        broker.stop()


def test_second_session_actor_in_the_same_process_fails_fast(
    sessions: Sessions, in_process_node: tuple[Node, str]
) -> None:
    node, phone = in_process_node
    with sessions.client() as client:
        user = log_in(sessions, client, "alice", phone)
        settings = load_settings(sessions.write_config(), env=sessions.env())
        intruder = SessionActor(
            ActorContext("session:alice", node),
            account="alice",
            settings=settings.account("alice"),
            session_settings=settings.session,
            data_dir=settings.data_dir,
        )
        with pytest.raises(SessionLockedError) as caught:
            get_loop_thread().run(intruder.on_start(), timeout=10)
        assert caught.value.pid == os.getpid()
        assert caught.value.path == sessions.data_dir / "sessions" / "alice.session"
        assert f"pid {os.getpid()}" in str(caught.value)
        # The owner keeps its client, its file and its lock.
        assert _me(client, "alice").id == user.id
        with pytest.raises(SessionLockedError):
            SessionFileLock(caught.value.path).acquire()


def test_node_behind_another_broker_fails_on_the_file_lock(
    sessions: Sessions, sandbox: SandboxThread, broker: Proc, client: Client
) -> None:
    phone, user = sessions.add_user("alice")
    owner = sessions.node("n1", "alice")
    log_in(sessions, client, "alice", phone)

    # A second deployment on the same host and data directory, with a broker of its own
    # that knows nothing of n1: it grants session:alice, and only the file lock stands.
    # (On tcp: the default ipc endpoints are the first broker's, which keeps them.)
    other = Sessions(
        sessions.tmp, sandbox=sandbox, accounts=dict(sessions.accounts), transport="tcp"
    )
    try:
        other_broker = other.run("--role", "broker", name="broker2")
        wait_until(lambda: other_broker.has_logged("broker serving"), START_S, "broker2 to bind")
        intruder = other.node("n2", "alice")

        def failed() -> str:
            status = other.status()
            return (
                next((a.last_error for a in status.addresses if a.address == "session:alice"), "")
                if "session:alice" in status.failed
                else ""
            )

        last_error = wait_until(failed, CALL_TIMEOUT, "session:alice to fail on broker2")
        assert isinstance(last_error, str)
        assert "SessionLockedError" in last_error and f"pid {owner.pid}" in last_error

        with other.client() as other_client:
            error = refused(other_client, "session:alice", s.GetMe(), errors.Unavailable)
        assert f"pid {owner.pid}" in error.message
        crashes = [e for e in intruder.log_events() if e.get("event") == "actor crashed"]
        assert crashes and all(f"pid {owner.pid}" in str(e.get("error")) for e in crashes)
        assert intruder.popen.poll() is None  # the process lives on and reports the failure
        assert not intruder.has_logged("session state")  # it never started a client
    finally:
        other.stop_all()

    # The owner was never disturbed, and its session file is intact: a restart of the
    # owner is still logged in.
    assert _me(client, "alice").id == user.id
    assert owner.stop() == 0
    sessions.node("n3", "alice")
    sessions.wait_state(client, "alice", "authorized")
    assert _me(client, "alice").id == user.id
    _assert_never_locked(sessions.tmp)
