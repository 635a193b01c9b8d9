"""ipc endpoints that only this Unix user can reach.

A Unix socket is reached by ``connect()``, which needs write permission on the socket file
and search permission on every directory above it. The broker binds each ipc endpoint in a
directory it creates 0700 and makes the socket 0600, so another user's process cannot
connect, whatever the permissions of the directories further up.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import zmq

from runtime.private import private_dirs

PREFIX = "ipc://"


def bind(sock: zmq.Socket, endpoint: str) -> None:
    """Bind ``sock`` to ``endpoint``; an ipc one in a 0700 directory, its socket 0600.

    Missing directories are created 0700. Raises zmq.ZMQError if the bind fails (EADDRINUSE
    when a live process listens there: ZeroMQ would silently take the path over), OSError
    if the directory cannot be created.
    """
    if not endpoint.startswith(PREFIX):
        sock.bind(endpoint)
        return
    path = Path(endpoint.removeprefix(PREFIX))
    private_dirs(path.parent)
    if _listening(path):
        message = f"{os.strerror(errno.EADDRINUSE)} (addr={endpoint!r})"
        raise zmq.ZMQError(errno.EADDRINUSE, message)
    sock.bind(endpoint)
    os.chmod(path, 0o600)


def _listening(path: Path) -> bool:
    """Does a process accept connections on the Unix socket at ``path``?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False  # missing, stale (ECONNREFUSED) or not a socket: free to bind
    return True
