"""The single-owner OS lock a session actor holds on its session file.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a sidecar file ``<session file>.lock``, not on
the SQLite database itself: SQLite takes POSIX record locks on the database, and POSIX
record locks are dropped when *any* descriptor of the file in the process is closed, so a
lock on the database would silently vanish. An flock belongs to its open file description:
a second `SessionFileLock` on the same file fails whether it is in another process or in
this one, and the kernel releases the lock when the holder's process dies, even by
``kill -9``. The sidecar file is never deleted: deleting it would let a newcomer lock a
fresh file while an old holder still holds the unlinked one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

__all__ = ["SessionFileLock", "SessionLockedError"]

_FILE_MODE = 0o600
# Locks held in this process, so a forked child can close its copies (see _close_in_child).
# A strong reference on purpose: a held lock stays held until release() or process exit,
# even if its owner drops the object.
_held: set[SessionFileLock] = set()


class SessionLockedError(RuntimeError):
    """The session file is locked by another holder.

    ``path`` is the session file, ``pid`` and ``host`` the holder as it recorded itself
    (None if it had not written them yet).
    """

    def __init__(self, path: Path, pid: int | None, host: str | None) -> None:
        self.path = path
        self.pid = pid
        self.host = host
        holder = "another holder"
        if pid is not None:
            holder = f"pid {pid} on {host}" if host else f"pid {pid}"
        super().__init__(f"Can't lock file {path} because it is already in use by {holder}")


class SessionFileLock:
    """An exclusive, non-blocking lock on a session file, held until released or death.

    Use as a context manager or with `acquire`/`release`. The lock file is created with mode
    0600 next to the session file, whose directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once or fail; never waits.

        Raises SessionLockedError (naming the file and the holder's pid) if another holder
        has it, RuntimeError if this object already holds it, and OSError if the lock file
        cannot be opened (for example, its directory does not exist).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this SessionFileLock")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SessionLockedError(self.path, *holder) from None
            raise
        try:
            # A file created earlier under a looser umask or by hand is tightened too.
            os.fchmod(fd, _FILE_MODE)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _held.add(self)

    def release(self) -> None:
        """Give the lock up; does nothing if it is not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held.discard(self)
        try:
            # Clear the holder record first, so nobody reads a stale pid from a free lock.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> SessionFileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "free"
        return f"SessionFileLock({str(self.path)!r}, {state})"


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """The pid and host the holder wrote into the lock file, or Nones if not readable yet."""
    try:
        fields = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
    except OSError:
        return None, None
    pid = int(fields[0]) if fields and fields[0].isdigit() else None
    host = fields[1] if len(fields) > 1 else None
    return pid, host


def _close_in_child() -> None:
    """After fork, close the child's copies of held lock descriptors without unlocking.

    A forked child shares the parent's open file descriptions; keeping them would keep the
    lock alive after the parent dies. Closing (not LOCK_UN, which would release the
    parent's lock too) leaves the parent the only holder.
    """
    for lock in list(_held):
        fd, lock._fd = lock._fd, None  # noqa: SLF001
        if fd is not None:
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)
