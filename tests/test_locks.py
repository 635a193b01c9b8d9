"""Session-file lock: one holder per file across threads and processes, freed by death."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.locks import SessionFileLock, SessionLockedError

ROOT = Path(__file__).resolve().parent.parent

# Takes the lock, reports "locked <pid>", then holds it until killed. With "fork", a forked
# child reports "child <pid>" once os.fork() has returned in it (its at-fork handlers, which
# close its copies of the lock descriptors, have run by then) and lives on.
HOLDER = textwrap.dedent(
    """
    import os, sys
    from runtime.locks import SessionFileLock
    lock = SessionFileLock(sys.argv[1])
    lock.acquire()
    # One write per line: with PYTHONUNBUFFERED, print() writes its parts one by one and
    # the two processes' lines could interleave.
    if sys.argv[2] == "fork" and os.fork() == 0:
        os.write(1, f"child {os.getpid()}\\n".encode())
        sys.stdin.read()
        os._exit(0)
    os.write(1, f"locked {os.getpid()}\\n".encode())
    sys.stdin.read()
    """
)

# Tries the lock once and reports the outcome.
CONTENDER = textwrap.dedent(
    """
    import sys
    from runtime.locks import SessionFileLock, SessionLockedError
    try:
        with SessionFileLock(sys.argv[1]):
            print("acquired")
    except SessionLockedError as exc:
        print(f"refused pid={exc.pid}: {exc}")
        sys.exit(3)
    """
)


def python(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return tmp_path / "alice.session"


@pytest.fixture
def holder(session: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = python(HOLDER, str(session), "nofork")
    assert proc.stdout is not None
    fields = proc.stdout.readline().split()
    assert fields[0] == "locked", fields
    yield proc, int(fields[1])
    proc.kill()
    proc.communicate()


def test_acquire_writes_holder_and_mode_0600(session: Path) -> None:
    lock = SessionFileLock(session)
    lock.acquire()
    try:
        assert lock.held
        assert lock.lock_path == session.with_name("alice.session.lock")
        assert stat.S_IMODE(lock.lock_path.stat().st_mode) == 0o600
        pid, host = lock.lock_path.read_text().split()
        assert int(pid) == os.getpid() and host
        assert not session.exists()  # the session file itself is not touched
    finally:
        lock.release()
    assert not lock.held


def test_existing_lock_file_is_tightened_to_0600(session: Path) -> None:
    lock_path = session.with_name("alice.session.lock")
    lock_path.write_text("")
    lock_path.chmod(0o644)
    with SessionFileLock(session):
        assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600


def test_second_lock_in_same_process_fails_at_once(session: Path) -> None:
    with SessionFileLock(session), pytest.raises(SessionLockedError) as info:
        SessionFileLock(session).acquire()
    error = info.value
    assert error.pid == os.getpid()
    assert error.path == session
    assert str(error).startswith(f"Can't lock file {session} because it is already in use by pid")
    assert f"pid {os.getpid()}" in str(error)
    with SessionFileLock(session) as again:  # released by the with block
        assert again.held


def test_release_is_idempotent_and_double_acquire_is_refused(session: Path) -> None:
    lock = SessionFileLock(session)
    lock.release()
    lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    lock.release()
    assert lock.lock_path.read_text() == ""  # no stale pid left in a free lock


def test_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SessionFileLock(tmp_path / "nope" / "alice.session").acquire()


def test_other_process_fails_fast_naming_the_holder(session: Path) -> None:
    with SessionFileLock(session):
        contender = python(CONTENDER, str(session))
        out, _ = contender.communicate(timeout=30)
    assert contender.returncode == 3
    assert f"refused pid={os.getpid()}" in out
    assert f"Can't lock file {session} because it is already in use by pid {os.getpid()}" in out
    contender = python(CONTENDER, str(session))
    out, _ = contender.communicate(timeout=30)
    assert (contender.returncode, out.strip()) == (0, "acquired")


def test_kill_9_of_holder_frees_the_lock(
    session: Path, holder: tuple[subprocess.Popen[str], int]
) -> None:
    proc, pid = holder
    with pytest.raises(SessionLockedError) as info:
        SessionFileLock(session).acquire()
    assert info.value.pid == pid
    assert f"in use by pid {pid}" in str(info.value)
    os.kill(pid, signal.SIGKILL)
    proc.wait()
    with SessionFileLock(session) as lock:
        assert lock.held


def test_forked_child_does_not_keep_the_lock(session: Path) -> None:
    proc = python(HOLDER, str(session), "fork")
    assert proc.stdout is not None and proc.stdin is not None
    # Both lines, in whichever order they come: the child has closed its copies only once
    # it has reported.
    reports = dict(proc.stdout.readline().split() for _ in range(2))
    pid, child = reports["locked"], reports["child"]
    try:
        os.kill(int(pid), signal.SIGKILL)
        proc.wait()
        # The child still runs with a copy of the parent's descriptors, but it closed them.
        os.kill(int(child), 0)
        with SessionFileLock(session) as lock:
            assert lock.held
    finally:
        os.kill(int(child), signal.SIGKILL)
        proc.kill()
        proc.communicate()
