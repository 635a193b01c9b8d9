"""CURVE encryption and authentication of both ends for links between hosts.

With ``runtime.curve_secret_key`` set, the broker's sockets are CURVE servers; every node
and client then needs ``runtime.curve_server_key`` (the broker's public key) and a key
pair of its own that the broker knows (see :mod:`runtime.auth`): the process's identity,
set once by :func:`use_identity` (from ``runtime.curve_key_file``, or the broker's own
pair on its host). A peer without the right server key, or with a key the broker does not
know, never completes the handshake, so it is never served. The option belongs to a
socket, not an endpoint, so a broker that also binds inproc (one process) asks it there
too.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth

from runtime.private import private_dirs

KeyPair = tuple[str, str]
# This process's (public, secret) key pair for the links it dials; None: a fresh one each.
_identity: KeyPair | None = None


def use_identity(key_pair: KeyPair | None) -> None:
    """Make ``key_pair`` the one this process's nodes and clients authenticate with."""
    global _identity
    _identity = key_pair


def load_key_pair(path: str | Path) -> KeyPair:
    """The (public, secret) pair in a ``NAME.key_secret`` certificate (zmq.auth's format).

    Raises ValueError naming the file when it cannot be read or holds no secret key.
    """
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load a CURVE certificate from {path}: {exc}") from None
    if secret is None:
        raise ValueError(f"{path} holds no secret key (expected the .key_secret file)")
    return public.decode(), secret.decode()


def load_public_keys(directory: str | Path) -> dict[str, str]:
    """{public key: name} of every ``NAME.key`` certificate in ``directory`` (as zmq.auth
    reads them; the secret halves are skipped). Raises ValueError for an unreadable one."""
    keys: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load a CURVE certificate from {path}: {exc}") from None
        keys[public.decode()] = path.stem
    return keys


def write_key_pair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (zmq.auth's format; the secret 0600, the
    directory 0700) and return their paths. Raises FileExistsError rather than replace."""
    directory = Path(directory)
    private_dirs(directory)
    public_file, secret_file = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it first or choose another --name")
    # zmq.auth writes with the umask's mode; the directory (0700) keeps others out until
    # the secret half is 0600.
    os.chmod(directory, 0o700)
    zmq.auth.create_certificates(directory, name)
    os.chmod(secret_file, 0o600)
    return public_file, secret_file


def new_key_pair() -> tuple[str, str]:
    """A fresh (public, secret) CURVE key pair, Z85-encoded (40 characters each)."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def public_key(secret_key: str) -> str:
    """The public key that belongs to a Z85 secret key."""
    return zmq.curve_public(secret_key.encode()).decode()


def serve(sock: zmq.Socket, secret_key: str | None) -> None:
    """Make ``sock`` a CURVE server; call before it binds (no-op without a key)."""
    if secret_key is None:
        return
    sock.curve_secretkey = secret_key.encode()
    sock.curve_publickey = zmq.curve_public(secret_key.encode())
    sock.curve_server = True


def dial(sock: zmq.Socket, server_key: str | None, key_pair: KeyPair | None = None) -> None:
    """Make ``sock`` a CURVE client of the broker; call before it connects (no-op without).

    It authenticates with ``key_pair``, else this process's identity, else a fresh pair
    (which a broker that checks client keys never admits).
    """
    if server_key is None:
        return
    pair = key_pair or _identity or new_key_pair()
    sock.curve_serverkey = server_key.encode()
    sock.curve_publickey = pair[0].encode()
    sock.curve_secretkey = pair[1].encode()
