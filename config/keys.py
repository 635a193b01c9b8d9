"""Checks of key material named in the settings: RSA public keys of custom servers,
StringSessions and ZeroMQ endpoints. Each returns the usable value or raises ValueError
whose message says what is wrong, never quoting a secret.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["ENDPOINT_FORMS", "check_endpoint", "check_string_session", "rsa_public_key_pem"]

ENDPOINT_FORMS = "tcp://HOST:PORT, ipc://PATH or inproc://NAME"
# HOST is a name, an IPv4 address, [IPv6], or * (every interface); PORT is a number or *.
_TCP = re.compile(r"^tcp://(?P<host>\*|\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+):(?P<port>\*|\d{1,5})$")
# A Unix socket's path: sun_path holds 108 bytes, the terminating NUL included.
_IPC_PATH_MAX = 107
_OTHER = re.compile(r"^(ipc|inproc)://\S+$")


def rsa_public_key_pem(path: str | Path) -> str:
    """The RSA public key in the PEM file at ``path``, as PKCS#1 PEM (what Telethon takes).

    Accepts PKCS#1 (``BEGIN RSA PUBLIC KEY``) and SubjectPublicKeyInfo (``BEGIN PUBLIC
    KEY``). Raises ValueError naming the problem: the file is missing or unreadable, is not
    a PEM public key, or holds a key that is not RSA.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError(
            f"{path} is not a PEM public key (expected BEGIN RSA PUBLIC KEY or BEGIN PUBLIC KEY)"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path} holds an {type(key).__name__}, not an RSA public key")
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return pem.decode()


def check_string_session(value: str) -> None:
    """Raise ValueError unless ``value`` is a Telethon StringSession Telethon can load."""
    # Imported here: Telethon is heavy and only accounts with a session_string need it.
    from telethon.sessions import StringSession

    try:
        StringSession(value)
    except Exception:  # Telethon raises ValueError, binascii.Error or struct.error
        raise ValueError(
            "not a valid StringSession (expected the text `run.py export-session` prints)"
        ) from None


def check_endpoint(endpoint: str) -> None:
    """Raise ValueError unless ``endpoint`` has one of the forms in `ENDPOINT_FORMS`."""
    tcp = _TCP.match(endpoint)
    if tcp is not None:
        port = tcp.group("port")
        if port == "*" or 1 <= int(port) <= 65535:
            return
        raise ValueError(f"port {port} is out of range 1-65535")
    if _OTHER.match(endpoint) is None:
        raise ValueError(f"{endpoint!r} is not a ZeroMQ endpoint (expected {ENDPOINT_FORMS})")
    path = endpoint.removeprefix("ipc://")
    if path != endpoint and len(path.encode()) > _IPC_PATH_MAX:
        raise ValueError(
            f"ipc path {path!r} is longer than {_IPC_PATH_MAX} bytes, more than a Unix socket "
            "takes (use a shorter data_dir or set the endpoint)"
        )
