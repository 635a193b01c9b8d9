"""Secrets at rest: the data dir and session directories 0700, session and key files 0600.

Checked when a command starts (:func:`secure_at_rest`): a path that other users may read
is tightened (logged with its path and modes, never its contents); one owned by another
user, which this process must not take over, is refused with
:class:`runtime.errors.ExposedSecretError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import structlog

from config import Settings
from runtime.errors import ExposedSecretError

log = structlog.get_logger("private")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# In the data dir: the directories that hold secrets, and the files in them that do.
_SECRET_DIRS = ("sessions", "sockets", "keys")
_SECRET_SUFFIXES = (".session", ".key_secret", ".toml")


def secure_at_rest(settings: Settings, files: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Make the data dir, its secret directories and every secret file private.

    Secret files: every ``*.session``, ``*.key_secret`` and ``*.toml`` file in the data
    dir and its secret directories, each account's ``session_file``, and ``files`` (key
    files named in the settings).
    Raises ExposedSecretError for a path open to others that another user owns.
    """
    data_dir = Path(settings.data_dir)
    dirs = [data_dir, *(data_dir / name for name in _SECRET_DIRS)]
    secret_files: list[Path] = [Path(f) for f in files]
    for directory in dirs:
        if not directory.is_dir():
            continue
        _tighten(directory, PRIVATE_DIR)
        secret_files += [
            p for p in directory.iterdir() if p.suffix in _SECRET_SUFFIXES and p.is_file()
        ]
    secret_files += [Path(a.session_file) for a in settings.accounts.values() if a.session_file]
    for path in secret_files:
        for candidate in (path, path.with_name(path.name + ".session")):
            if candidate.is_file():
                _tighten(candidate, PRIVATE_FILE)


def private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 (umask permitting)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR, exist_ok=True)


def _tighten(path: Path, mode: int) -> None:
    """Give ``path`` no group or other permissions; raises ExposedSecretError if another
    user owns it."""
    path = path.absolute()
    info = path.stat()
    current = stat.S_IMODE(info.st_mode)
    if not current & 0o077:
        return
    if info.st_uid != os.geteuid():
        raise ExposedSecretError(
            f"{path} holds secrets and is open to other users (mode {current:o}) but belongs "
            f"to uid {info.st_uid}, not this user ({os.geteuid()}): make it {mode:o} and owned "
            "by the user that runs Switchboard"
        )
    os.chmod(path, mode)
    log.warning("permissions tightened", path=str(path), was=f"{current:o}", now=f"{mode:o}")
