"""CURVE encryption and server authentication for links between hosts.

With ``runtime.curve_secret_key`` set, the broker's tcp/ipc sockets are CURVE servers;
every node and client then needs ``runtime.curve_server_key`` (the broker's public key)
and talks to it encrypted, each with a fresh key pair of its own. A peer without the right
server key never completes the handshake, so it is never served. The option belongs to a
socket, not an endpoint, so a broker that also binds inproc (one process) asks it there
too.
"""

from __future__ import annotations

import zmq


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


def dial(sock: zmq.Socket, server_key: str | None) -> None:
    """Make ``sock`` a CURVE client of the broker; call before it connects (no-op without)."""
    if server_key is None:
        return
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey = server_key.encode()
    sock.curve_publickey = public
    sock.curve_secretkey = secret
