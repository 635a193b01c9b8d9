"""users.*: looking accounts up."""

from __future__ import annotations

from telethon.tl import functions, types

from sandbox.backend import RpcError
from sandbox.methods import Call, handles


@handles(functions.users.GetUsersRequest)
async def get_users(call: Call, query: functions.users.GetUsersRequest) -> list[types.TypeUser]:
    """The requested users; unknown ones are left out, as Telegram does."""
    result: list[types.TypeUser] = []
    for peer in query.id:
        try:
            user = call.input_user(peer)
        except RpcError:
            continue
        result.append(call.world.user_view(user, call.me.id))
    return result


@handles(functions.users.GetFullUserRequest)
async def get_full_user(
    call: Call, query: functions.users.GetFullUserRequest
) -> types.users.UserFull:
    """A user's full profile. Raises RpcError 400 USER_ID_INVALID."""
    user = call.input_user(query.id)
    full = types.UserFull(
        id=user.id,
        settings=types.PeerSettings(),
        notify_settings=types.PeerNotifySettings(),
        common_chats_count=0,
        bot_info=types.BotInfo(user_id=user.id, description="", commands=[]) if user.bot else None,
    )
    return types.users.UserFull(
        full_user=full, chats=[], users=[call.world.user_view(user, call.me.id)]
    )
