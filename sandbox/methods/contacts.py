"""contacts.*: resolving public usernames."""

from __future__ import annotations

from telethon.tl import functions, types

from sandbox.backend import RpcError
from sandbox.methods import Call, handles


@handles(functions.contacts.ResolveUsernameRequest)
async def resolve_username(
    call: Call, query: functions.contacts.ResolveUsernameRequest
) -> types.contacts.ResolvedPeer:
    """The user or channel with this public username.

    Raises USERNAME_INVALID (empty) / USERNAME_NOT_OCCUPIED (nobody has it).
    """
    if not query.username.strip("@ "):
        raise RpcError(400, "USERNAME_INVALID")
    found = call.world.by_username(query.username)
    if found is None:
        raise RpcError(400, "USERNAME_NOT_OCCUPIED")
    kind, peer_id = found
    world, me = call.world, call.me
    if kind == "channel":
        channel = world.state.channels[peer_id]
        return types.contacts.ResolvedPeer(
            peer=types.PeerChannel(peer_id), chats=[world.channel_view(channel, me.id)], users=[]
        )
    return types.contacts.ResolvedPeer(
        peer=types.PeerUser(peer_id),
        chats=[],
        users=[world.user_view(world.state.users[peer_id], me.id)],
    )
