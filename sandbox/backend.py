"""The seam between the sandbox's MTProto core and its world.

The core (transports, key exchange, encrypted sessions; ``sandbox/server.py`` and the
modules it uses) knows nothing of users or channels. The world (``sandbox/world.py`` and
the method handlers) knows nothing of bytes on the wire. They meet here:

* the core hands every decrypted, unwrapped query to :meth:`Backend.invoke` and sends
  back what it returns, or an ``rpc_error`` for a raised :class:`RpcError`;
* the world pushes unsolicited updates through :meth:`ClientSession.push`;
* auth keys live in the world, so that a saved world keeps them across restarts.
"""

from __future__ import annotations

from typing import Protocol

from telethon.tl.tlobject import TLObject, TLRequest


class RpcError(Exception):
    """A Telegram error answered as ``rpc_error`` (for example ``420 FLOOD_WAIT_5``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class DropConnection(Exception):
    """Raised by the world to make the core close the TCP connection without replying.

    Raised before a query executes, the client re-sends it; raised after, the side effect
    happened but the client never saw the result (it will re-send with a new msg_id).
    """


class ClientSession(Protocol):
    """One MTProto session (auth key + session id) as the core keeps it.

    Guarantees: ``push`` never blocks and never raises; pushing to a closed session is a
    no-op. ``receives_updates`` is False for a session whose queries all came wrapped in
    ``invokeWithoutUpdates``.
    """

    auth_key_id: int
    session_id: int
    layer: int | None
    receives_updates: bool

    def push(self, updates: TLObject) -> None:
        """Queue an unsolicited ``Updates`` object for this session."""

    def close(self) -> None:
        """Close the connection that carries this session."""


class Backend(Protocol):
    """What the core needs from the world."""

    def auth_key(self, key_id: int) -> bytes | None:
        """The auth key with this id, or None (the core then answers -404).

        Keys are the bytes the client holds: 256, or fewer when Telethon stripped leading
        zero bytes (about 1 key in 256); store them as given.
        """

    def add_auth_key(self, key_id: int, key: bytes) -> None:
        """Remember a key created by a finished key exchange."""

    def session_started(self, session: ClientSession) -> None:
        """A new session id appeared on an auth key (new_session_created was sent)."""

    def session_ended(self, session: ClientSession) -> None:
        """The connection carrying this session closed."""

    async def invoke(self, session: ClientSession, query: TLRequest) -> TLObject:
        """Execute one query (wrappers already removed) and return its result.

        Raises :class:`RpcError` for Telegram errors and :class:`DropConnection` to drop.
        """
