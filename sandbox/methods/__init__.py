"""Method handlers, one module per TL namespace, and the dispatch table over them.

A handler is registered with :func:`handles` for one Telethon request class; the table
maps the class to a :class:`Method`, which checks who may call it before running it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon.tl import types
from telethon.tl.tlobject import TLObject, TLRequest

from sandbox.backend import ClientSession, RpcError

if TYPE_CHECKING:
    from sandbox.world import AuthKeyRec, ChannelRec, UserRec, World


@dataclass
class Call:
    """One query being executed: the world, the session and who is logged in on it."""

    world: World
    session: ClientSession
    key: AuthKeyRec
    user: UserRec | None

    @property
    def me(self) -> UserRec:
        """The logged-in account; raises RpcError 401 AUTH_KEY_UNREGISTERED."""
        if self.user is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        return self.user

    def input_user(self, peer: TLObject) -> UserRec:
        """Resolve an InputUser / InputPeerUser / InputPeerSelf / InputUserSelf.

        A wrong access hash raises RpcError 400 USER_ID_INVALID; hash 0 is accepted, as
        Telegram does for users the caller has seen.
        """
        if isinstance(peer, (types.InputUserSelf, types.InputPeerSelf)):
            return self.me
        if isinstance(peer, (types.InputUser, types.InputPeerUser)):
            user = self.world.state.users.get(peer.user_id)
            if user is None or peer.access_hash not in (0, user.access_hash):
                raise RpcError(400, "USER_ID_INVALID")
            return user
        raise RpcError(400, "USER_ID_INVALID")

    def input_channel(self, peer: TLObject) -> ChannelRec:
        """Resolve an InputChannel / InputPeerChannel; raises RpcError 400 CHANNEL_INVALID."""
        if isinstance(peer, (types.InputChannel, types.InputPeerChannel)):
            channel = self.world.state.channels.get(peer.channel_id)
            if channel is None or peer.access_hash != channel.access_hash:
                raise RpcError(400, "CHANNEL_INVALID")
            return channel
        raise RpcError(400, "CHANNEL_INVALID")

    def readable_channel(self, peer: TLObject) -> ChannelRec:
        """A channel the caller may read; raises RpcError 400 CHANNEL_PRIVATE otherwise."""
        channel = self.input_channel(peer)
        if not self.world.can_read(channel, self.me.id):
            raise RpcError(400, "CHANNEL_PRIVATE")
        return channel

    def input_peer(self, peer: TLObject) -> UserRec | ChannelRec:
        """Resolve any InputPeer to a user or a channel; raises RpcError 400 PEER_ID_INVALID."""
        if isinstance(peer, (types.InputPeerChannel, types.InputChannel)):
            return self.input_channel(peer)
        if isinstance(peer, (types.InputPeerUser, types.InputPeerSelf, types.InputUser)):
            return self.input_user(peer)
        raise RpcError(400, "PEER_ID_INVALID")


Handler = Callable[[Call, Any], Awaitable[TLObject]]


@dataclass(frozen=True)
class Method:
    """A handler and who may call it."""

    handler: Handler
    auth: bool  # needs a logged-in account
    bots: bool  # bots may call it

    async def run(self, call: Call, query: TLRequest) -> TLObject:
        """Check the caller, then run the handler. Raises RpcError 401 / 400 BOT_METHOD_INVALID."""
        if self.auth and call.user is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        if not self.bots and call.user is not None and call.user.bot:
            raise RpcError(400, "BOT_METHOD_INVALID")
        return await self.handler(call, query)


_TABLE: dict[type, Method] = {}


def handles(
    request_type: type[TLRequest], *, auth: bool = True, bots: bool = True
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of ``request_type``."""

    def register(handler: Handler) -> Handler:
        if request_type in _TABLE:
            raise RuntimeError(f"two handlers for {request_type.__name__}")
        _TABLE[request_type] = Method(handler, auth, bots)
        return handler

    return register


def dispatch_table() -> dict[type, Method]:
    """The complete table: request class -> Method (imports every namespace module)."""
    from sandbox.methods import (  # noqa: F401  (imported for their registrations)
        account,
        auth,
        channels,
        contacts,
        help,
        messages,
        updates,
        users,
    )

    return dict(_TABLE)
