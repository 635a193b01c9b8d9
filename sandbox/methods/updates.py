"""updates.*: update state and the differences a client fetches to fill gaps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from telethon.tl import functions, types

from sandbox.methods import Call, handles
from sandbox.methods.messages import dialog
from sandbox.world import PtsEvent, events_after, now, timestamp

M = TypeVar("M")


def _replay(
    events: list[PtsEvent],
    find: Callable[[int], M | None],
    view: Callable[[M], types.Message],
    edited: Callable[[types.Message, PtsEvent], types.TypeUpdate],
    deleted: Callable[[PtsEvent], types.TypeUpdate],
) -> tuple[list[types.Message], list[types.TypeUpdate]]:
    """New messages and other updates that replay ``events`` (as they are now).

    A message created and later edited in the same page is only sent once, as new, in its
    current form; one deleted since is left out.
    """
    new_ids = {i for e in events if e.kind == "new" for i in e.ids}
    messages: list[types.Message] = []
    other: list[types.TypeUpdate] = []
    for event in events:
        if event.kind == "delete":
            other.append(deleted(event))
            continue
        msg = find(event.ids[0])
        if msg is None:
            continue
        if event.kind == "new":
            messages.append(view(msg))
        elif event.ids[0] not in new_ids:
            other.append(edited(view(msg), event))
    return messages, other


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
    joined channel posted to since ``query.date`` (except channels whose updates are
    withheld by a fault), so the client then fetches each channel's own difference.
    """
    world, me = call.world, call.me
    limits = world.limits
    if query.pts == me.pts:
        return types.updates.DifferenceEmpty(date=now(), seq=0)
    # A client ahead of the server (its world was reset) is told to start over from ours.
    if query.pts > me.pts or me.pts - query.pts > limits.difference_too_long:
        return types.updates.DifferenceTooLong(pts=me.pts)
    missed = events_after(me.log, query.pts)
    page = missed[: limits.difference_slice]
    messages, replayed = _replay(
        page,
        lambda i: world.box_message(me, i),
        lambda m: world.box_message_view(me, m),
        lambda view, e: types.UpdateEditMessage(message=view, pts=e.pts, pts_count=1),
        lambda e: types.UpdateDeleteMessages(messages=e.ids, pts=e.pts, pts_count=e.pts_count),
    )
    since = timestamp(query.date)
    other: list[types.TypeUpdate] = list(replayed)
    other += [
        types.UpdateChannelTooLong(channel_id=c.id, pts=c.pts)
        for c in world.state.channels.values()
        if me.id in c.members
        and c.messages
        and c.messages[-1].date >= since
        and not world.faults.withheld(c.id)
    ]
    users, chats = world.entities_for(
        [*messages, *(u.message for u in replayed if isinstance(u, types.UpdateEditMessage))],
        me.id,
        extra_users=[me.id],
    )
    chats += [
        world.channel_view(world.state.channels[u.channel_id], me.id)
        for u in other
        if isinstance(u, types.UpdateChannelTooLong) and all(c.id != u.channel_id for c in chats)
    ]
    if len(page) < len(missed):
        state = types.updates.State(pts=page[-1].pts, qts=me.qts, date=now(), seq=0, unread_count=0)
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
        entry = dialog(types.PeerChannel(channel.id), top, channel.pts)
        return types.updates.ChannelDifferenceTooLong(
            dialog=entry, messages=messages, chats=chats, users=users, final=True
        )
    missed = events_after(channel.log, query.pts)
    page = missed[:limit]
    messages, other = _replay(
        page,
        lambda i: world.channel_message(channel, i),
        lambda m: world.channel_message_view(channel, m, me.id),
        lambda view, e: types.UpdateEditChannelMessage(message=view, pts=e.pts, pts_count=1),
        lambda e: types.UpdateDeleteChannelMessages(
            channel_id=channel.id, messages=e.ids, pts=e.pts, pts_count=e.pts_count
        ),
    )
    edited = [u.message for u in other if isinstance(u, types.UpdateEditChannelMessage)]
    users, chats = world.entities_for([*messages, *edited], me.id)
    final = len(page) == len(missed)
    return types.updates.ChannelDifference(
        pts=page[-1].pts if not final else channel.pts,
        new_messages=messages,
        other_updates=other,
        chats=chats,
        users=users,
        final=final,
    )
