"""Who a peer is: ZAP authentication of CURVE clients, and the names each may speak as.

With CURVE on, the broker runs a :class:`PeerAuthenticator` (a ``zmq.auth``
ThreadAuthenticator) on its context: only client keys it knows complete the handshake,
on the ROUTER and on the event bus alike. Each admitted connection gets a ZAP user id,
the peer's name from the config (``peers.NAME.public_key``, or ``NAME.key`` in
``runtime.curve_clients_dir``), or :data:`LOCAL` for the broker's own key (the processes
of the broker's host). An unknown key is refused and its fingerprint logged (rate
limited). Without CURVE every peer is local: the ipc sockets admit this Unix user only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from runtime.logging import LogThrottle

log = structlog.get_logger("auth")

LOCAL = "local"


@dataclass(frozen=True)
class Peer:
    """An authenticated peer and what it may do (see ``config.PeerSettings``).

    ``names``: the names (glob patterns) it may speak as (empty: ``NAME`` and
    ``NAME:*``); ``send_to``: the targets (glob patterns) its requests may go to (empty:
    none); ``deny``: message types it may never send. The local peer may do everything.
    """

    name: str
    names: tuple[str, ...] = ()
    send_to: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @property
    def local(self) -> bool:
        return self.name == LOCAL

    def may_speak_as(self, name: str) -> bool:
        """May this peer use ``name`` (a client identity, node id or claimed address)?"""
        if self.local:
            return True
        patterns = self.names or (self.name, f"{self.name}:*")
        return any(fnmatchcase(name, pattern) for pattern in patterns)

    def refusal(self, target: str, message_type: str) -> str | None:
        """The rule that forbids a request of ``message_type`` to ``target``, or None."""
        if self.local:
            return None
        if message_type in self.deny:
            return f"peers.{self.name}.deny lists {message_type}"
        if not any(fnmatchcase(target, pattern) for pattern in self.send_to):
            return f"peers.{self.name}.send_to does not include {target!r}"
        return None


LOCAL_PEER = Peer(LOCAL)


def fingerprint(public_key: bytes | str) -> str:
    """A short, loggable name for a Z85 public key (not the key itself)."""
    raw = public_key.encode() if isinstance(public_key, str) else public_key
    return hashlib.sha256(raw).hexdigest()[:16]


class _Zap(ThreadAuthenticator):
    """zmq.auth's authenticator, with the peer's name as the connection's user id."""

    def __init__(self, context: zmq.Context, keys: Mapping[str, str]) -> None:
        super().__init__(context)
        self._keys = dict(keys)
        self._refused = LogThrottle(log, "unknown CURVE key refused")

    def callback(self, domain: str, key: bytes) -> bool:
        if key.decode() in self._keys:
            return True
        self._refused(fingerprint=fingerprint(key))
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._keys[zmq.utils.z85.encode(client_public_key).decode()]


class PeerAuthenticator:
    """The broker's ZAP handler and its table of peers.

    ``keys`` maps each admitted Z85 public key to its peer's name; ``peers`` gives the
    rules of peers by name (a key's peer without rules may only speak as itself).
    """

    def __init__(
        self, context: zmq.Context, keys: Mapping[str, str], peers: Mapping[str, Peer]
    ) -> None:
        self._zap = _Zap(context, keys)
        self._peers = {
            name: peers.get(name) or Peer(name) for name in set(keys.values()) if name != LOCAL
        }

    def start(self) -> None:
        """Serve ZAP requests on the context (before the CURVE sockets bind)."""
        self._zap.start()
        self._zap.configure_curve_callback("*", credentials_provider=self._zap)

    def stop(self) -> None:
        self._zap.stop()

    def peer(self, user_id: str | None) -> Peer:
        """The peer a connection's ZAP user id names (local for None or the broker's key)."""
        if user_id is None or user_id == LOCAL:
            return LOCAL_PEER
        return self._peers[user_id]

    @property
    def peers(self) -> list[Peer]:
        """Every admitted peer but the local one, by name."""
        return sorted(self._peers.values(), key=lambda p: p.name)
