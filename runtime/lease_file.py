"""The broker's one piece of state on disk: the addresses granted to other processes.

One line per address, ``<address> <epoch>``. A restarted broker reads it to know which
addresses a node may still hold a lease on (:mod:`runtime.leases`). Guarantees: the file
is replaced atomically and durably (:func:`write`), so a crash leaves the old list or the
new one; a file that cannot be read or parsed is reported and read as unknown (None), so
that every claim waits out the leases rather than trusting a partial list.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("broker")


def read(path: str | None) -> dict[str, int] | None:
    """{address: epoch} the previous broker had granted to other processes (None: unknown)."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("broker state unreadable, every claim waits out the leases", error=str(exc))
        return None
    state: dict[str, int] = {}
    for line in text.splitlines():
        address, _, epoch = line.rpartition(" ")
        if not address or not epoch.isdigit():
            log.warning("broker state malformed, every claim waits out the leases", line=line)
            return None
        state[address] = int(epoch)
    return state


def write(path: str | None, addresses: dict[str, int]) -> None:
    """Replace the state file atomically and durably (write, fsync, rename, fsync dir).

    Does nothing when ``path`` is None; raises OSError if the file cannot be written.
    """
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{a} {e}\n" for a, e in sorted(addresses.items())))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
