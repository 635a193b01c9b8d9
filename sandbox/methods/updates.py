"""updates.*: update state and the differences a client fetches to fill gaps."""

from __future__ import annotations

from telethon.tl import functions, types

from sandbox.methods import Call, handles
from sandbox.world import now, timestamp


@handles(functions.updates.GetStateRequest)
async def get_state(call: Call, _query: functions.updates.GetStateRequest) -> types.updates.State:
    """The account's current pts / qts / date / seq."""
    return call.world.state_view(call.me)


@handles(functions.updates.GetDifferenceRequest)
async def get_difference(
    call: Call, query: functions.updates.GetDifferenceRequest
) -> types.updates.TypeDifference:
    """What the account missed since ``query.pts``.

    Empty when up to date. differenceTooLong when more than
    ``limits.difference_too_long`` messages were missed, or when the client claims a pts
    the server never reached. differenceSlice (with an intermediate state) when more than
    ``limits.difference_slice``. ``other_updates`` carries updateChannelTooLong for every
    joined channel posted to since ``query.date``, so the client then fetches each
    channel's own difference.
    """
    world, me = call.world, call.me
    limits = world.limits
    if query.pts == me.pts:
        return types.updates.DifferenceEmpty(date=now(), seq=0)
    # A client ahead of the server (its world was reset) is told to start over from ours.
    if query.pts > me.pts or me.pts - query.pts > limits.difference_too_long:
        return types.updates.DifferenceTooLong(pts=me.pts)
    missed = [m for m in me.box if m.pts > query.pts]
    page = missed[: limits.difference_slice]
    messages = [world.box_message_view(me, m) for m in page]
    since = timestamp(query.date)
    other: list[types.TypeUpdate] = [
        types.UpdateChannelTooLong(channel_id=c.id, pts=c.pts)
        for c in world.state.channels.values()
        if me.id in c.members and c.messages and c.messages[-1].date >= since
    ]
    users, chats = world.entities_for(messages, me.id, extra_users=[me.id])
    chats += [
        world.channel_view(world.state.channels[u.channel_id], me.id)
        for u in other
        if all(c.id != u.channel_id for c in chats)
    ]
    if len(page) < len(missed):
        last = page[-1]
        state = types.updates.State(pts=last.pts, qts=me.qts, date=last.date, seq=0, unread_count=0)
        return types.updates.DifferenceSlice(
            new_messages=messages,
            new_encrypted_messages=[],
            other_updates=other,
            chats=chats,
            users=users,
            intermediate_state=state,
        )
    return types.updates.Difference(
        new_messages=messages,
        new_encrypted_messages=[],
        other_updates=other,
        chats=chats,
        users=users,
        state=world.state_view(me),
    )


@handles(functions.updates.GetChannelDifferenceRequest)
async def get_channel_difference(
    call: Call, query: functions.updates.GetChannelDifferenceRequest
) -> types.updates.TypeChannelDifference:
    """A channel's posts since ``query.pts``, at most ``query.limit`` at a time.

    ``final`` is False while more remain; channelDifferenceTooLong (with the latest
    ``limit`` posts) when more than ``limits.channel_difference_too_long`` were missed.
    Raises CHANNEL_INVALID / CHANNEL_PRIVATE.
    """
    world, me = call.world, call.me
    channel = call.readable_channel(query.channel)
    limit = max(1, min(query.limit or 100, 100000))
    if query.pts >= channel.pts:
        return types.updates.ChannelDifferenceEmpty(pts=channel.pts, final=True)
    if channel.pts - query.pts > world.limits.channel_difference_too_long:
        latest = channel.messages[-limit:]
        messages = [world.channel_message_view(channel, m, me.id) for m in latest]
        users, chats = world.entities_for(messages, me.id)
        top = channel.messages[-1].id if channel.messages else 0
        dialog = types.Dialog(
            peer=types.PeerChannel(channel.id),
            top_message=top,
            read_inbox_max_id=top,
            read_outbox_max_id=top,
            unread_count=0,
            unread_mentions_count=0,
            unread_reactions_count=0,
            unread_poll_votes_count=0,
            notify_settings=types.PeerNotifySettings(),
            pts=channel.pts,
        )
        return types.updates.ChannelDifferenceTooLong(
            dialog=dialog, messages=messages, chats=chats, users=users, final=True
        )
    missed = [m for m in channel.messages if m.pts > query.pts]
    page = missed[:limit]
    messages = [world.channel_message_view(channel, m, me.id) for m in page]
    users, chats = world.entities_for(messages, me.id)
    final = len(page) == len(missed)
    return types.updates.ChannelDifference(
        pts=page[-1].pts if not final else channel.pts,
        new_messages=messages,
        other_updates=[],
        chats=chats,
        users=users,
        final=final,
    )
