"""channels.*: joining and leaving broadcast channels, looking them up, reading posts."""

from __future__ import annotations

from telethon.tl import functions, types

from sandbox.backend import RpcError
from sandbox.methods import Call, handles
from sandbox.world import now


def _channel_updates(call: Call, channel_id: int) -> types.Updates:
    channel = call.world.state.channels[channel_id]
    return types.Updates(
        updates=[types.UpdateChannel(channel_id=channel_id)],
        users=[],
        chats=[call.world.channel_view(channel, call.me.id)],
        date=now(),
        seq=0,
    )


@handles(functions.channels.JoinChannelRequest, bots=False)
async def join_channel(call: Call, query: functions.channels.JoinChannelRequest) -> types.Updates:
    """Join a public channel (a no-op when already a member).

    Raises CHANNEL_INVALID, CHANNEL_PRIVATE for a private channel one is not in (those
    are joined through an invite, or the control API's ``add_member``), and
    CHANNELS_TOO_MUCH when the account is already in ``limits.channels_per_user`` channels.
    """
    channel = call.input_channel(query.channel)
    if call.me.id not in channel.members:
        if channel.username is None:
            raise RpcError(400, "CHANNEL_PRIVATE")
        call.world.check_channel_cap(call.me)
        call.world.add_member(channel, call.me.id)
    return _channel_updates(call, channel.id)


@handles(functions.channels.LeaveChannelRequest)
async def leave_channel(call: Call, query: functions.channels.LeaveChannelRequest) -> types.Updates:
    """Leave a channel. Raises CHANNEL_INVALID / USER_NOT_PARTICIPANT."""
    channel = call.input_channel(query.channel)
    call.world.remove_member(channel, call.me.id)
    return _channel_updates(call, channel.id)


@handles(functions.channels.GetChannelsRequest)
async def get_channels(
    call: Call, query: functions.channels.GetChannelsRequest
) -> types.messages.Chats:
    """The requested channels. Raises CHANNEL_INVALID for an unknown one."""
    return types.messages.Chats(
        chats=[call.world.channel_view(call.input_channel(c), call.me.id) for c in query.id]
    )


@handles(functions.channels.GetFullChannelRequest)
async def get_full_channel(
    call: Call, query: functions.channels.GetFullChannelRequest
) -> types.messages.ChatFull:
    """A channel's full info. Raises CHANNEL_INVALID / CHANNEL_PRIVATE."""
    channel = call.readable_channel(query.channel)
    top = channel.messages[-1].id if channel.messages else 0
    full = types.ChannelFull(
        id=channel.id,
        about="",
        read_inbox_max_id=top,
        read_outbox_max_id=top,
        unread_count=0,
        chat_photo=types.PhotoEmpty(id=0),
        notify_settings=types.PeerNotifySettings(),
        bot_info=[],
        pts=channel.pts,
        participants_count=len(channel.members),
        admins_count=len(channel.admins),
    )
    return types.messages.ChatFull(
        full_chat=full, chats=[call.world.channel_view(channel, call.me.id)], users=[]
    )


@handles(functions.channels.GetMessagesRequest)
async def get_messages(
    call: Call, query: functions.channels.GetMessagesRequest
) -> types.messages.ChannelMessages:
    """Posts by id (messageEmpty for missing ids). Raises CHANNEL_INVALID / CHANNEL_PRIVATE."""
    world, me = call.world, call.me
    channel = call.readable_channel(query.channel)
    result: list[types.TypeMessage] = []
    for wanted in query.id:
        if not isinstance(wanted, types.InputMessageID):
            raise RpcError(400, "MESSAGE_IDS_EMPTY")
        msg = world.channel_message(channel, wanted.id)
        result.append(
            world.channel_message_view(channel, msg, me.id)
            if msg
            else types.MessageEmpty(id=wanted.id, peer_id=types.PeerChannel(channel.id))
        )
    users, chats = world.entities_for(result, me.id)
    if all(c.id != channel.id for c in chats):
        chats.append(world.channel_view(channel, me.id))
    return types.messages.ChannelMessages(
        pts=channel.pts, count=len(result), messages=result, topics=[], chats=chats, users=users
    )


@handles(functions.channels.ReadHistoryRequest, bots=False)
async def read_history(call: Call, query: functions.channels.ReadHistoryRequest) -> bool:
    """Accepted; the sandbox keeps no read state. Raises CHANNEL_INVALID / CHANNEL_PRIVATE."""
    call.readable_channel(query.channel)
    return True


@handles(functions.channels.DeleteMessagesRequest)
async def delete_messages(
    call: Call, query: functions.channels.DeleteMessagesRequest
) -> types.messages.AffectedMessages:
    """Delete posts as an admin (unknown ids are ignored). Raises CHAT_ADMIN_REQUIRED."""
    channel = call.input_channel(query.channel)
    pts, count = call.world.delete_posts(
        channel, query.id, deleter_id=call.me.id, skip_key=call.key.key_id
    )
    return types.messages.AffectedMessages(pts=pts, pts_count=count)
