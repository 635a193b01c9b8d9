"""messages.*: history, sending (deduplicated by random_id), dialogs, inline buttons."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from sandbox.backend import RpcError
from sandbox.methods import Call, handles
from sandbox.world import BoxMessage, ChannelMessage, ChannelRec, now, timestamp

MAX_HISTORY_LIMIT = 100
MAX_MESSAGE_LENGTH = 4096


def _window(
    oldest_first: Sequence[BoxMessage] | Sequence[ChannelMessage],
    offset_id: int,
    offset_date: datetime | None,
    add_offset: int,
    limit: int,
    max_id: int,
    min_id: int,
) -> list[int]:
    """Indexes into ``oldest_first`` of the messages a getHistory page returns, newest first.

    Telegram's rules: start at the first message older than ``offset_id`` (or
    ``offset_date``), shift by ``add_offset`` (negative reaches newer messages), take
    ``limit``, then keep only ids strictly between ``min_id`` and ``max_id``. Ids and
    dates only grow, so the start is found by bisection.
    """
    count = len(oldest_first)
    newer = 0  # how many messages precede the page, counting from the newest
    stamp = timestamp(offset_date)  # an absent date arrives as the epoch
    if offset_id:
        newer = count - bisect_left(oldest_first, offset_id, key=lambda m: m.id)
    elif stamp:
        newer = count - bisect_left(oldest_first, stamp, key=lambda m: m.date)
    lo = newer + add_offset
    hi = lo + max(0, min(limit, MAX_HISTORY_LIMIT))
    picked = []
    for rank in range(max(lo, 0), min(hi, count)):
        index = count - 1 - rank
        msg_id = oldest_first[index].id
        if (not min_id or msg_id > min_id) and (not max_id or msg_id < max_id):
            picked.append(index)
    return picked


@handles(functions.messages.GetHistoryRequest, bots=False)
async def get_history(
    call: Call, query: functions.messages.GetHistoryRequest
) -> types.messages.TypeMessages:
    """One page of a chat's history, newest first (see :func:`_window`).

    Raises PEER_ID_INVALID / CHANNEL_INVALID / CHANNEL_PRIVATE.
    """
    world, me = call.world, call.me
    peer = call.input_peer(query.peer)
    window = (
        query.offset_id,
        query.offset_date,
        query.add_offset,
        query.limit,
        query.max_id,
        query.min_id,
    )
    if isinstance(peer, ChannelRec):
        channel = call.readable_channel(query.peer)
        posts = channel.messages
        picked = _window(posts, *window)
        messages = [world.channel_message_view(channel, posts[i], me.id) for i in picked]
        users, chats = world.entities_for(messages, me.id)
        if all(c.id != channel.id for c in chats):
            chats.append(world.channel_view(channel, me.id))
        return types.messages.ChannelMessages(
            pts=channel.pts,
            count=len(posts),
            messages=messages,
            topics=[],
            chats=chats,
            users=users,
        )
    chat = world.chat_messages(me, peer.id)
    picked = _window(chat, *window)
    messages = [world.box_message_view(me, chat[i]) for i in picked]
    users, chats = world.entities_for(messages, me.id, extra_users=[peer.id])
    if len(messages) == len(chat):
        return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)
    return types.messages.MessagesSlice(
        count=len(chat), messages=messages, topics=[], chats=chats, users=users
    )


@handles(functions.messages.GetMessagesRequest)
async def get_messages(
    call: Call, query: functions.messages.GetMessagesRequest
) -> types.messages.Messages:
    """Private-box messages by id; messageEmpty for ids the box does not have."""
    world, me = call.world, call.me
    result: list[types.TypeMessage] = []
    for wanted in query.id:
        if not isinstance(wanted, types.InputMessageID):
            raise RpcError(400, "MESSAGE_IDS_EMPTY")
        msg = world.box_message(me, wanted.id)
        result.append(
            world.box_message_view(me, msg)
            if msg
            # Telethon patches MessageEmpty into its custom Message, which needs a peer.
            else types.MessageEmpty(id=wanted.id, peer_id=types.PeerUser(me.id))
        )
    users, chats = world.entities_for(result, me.id)
    return types.messages.Messages(messages=result, topics=[], chats=chats, users=users)


@handles(functions.messages.SendMessageRequest)
async def send_message(call: Call, query: functions.messages.SendMessageRequest) -> TLObject:
    """Send a text message to a user, a bot or (as an admin) a channel.

    A repeated ``random_id`` from the same account returns the first result and sends
    nothing: the client re-sends a request whose answer a dropped connection lost.
    A bot's sends are rate limited (:meth:`sandbox.world.World.admit_bot_send`).
    Raises MESSAGE_EMPTY / MESSAGE_TOO_LONG / PEER_ID_INVALID / USER_IS_BOT /
    CHAT_ADMIN_REQUIRED / 420 FLOOD_WAIT_X.
    """
    world, me = call.world, call.me
    dedup = (me.id, query.random_id)
    if query.random_id and dedup in world.sent:
        return world.sent[dedup]
    if not query.message.strip():
        raise RpcError(400, "MESSAGE_EMPTY")
    if len(query.message) > MAX_MESSAGE_LENGTH:
        raise RpcError(400, "MESSAGE_TOO_LONG")
    peer = call.input_peer(query.peer)
    entities = query.entities or ()
    reply_to = getattr(query.reply_to, "reply_to_msg_id", None)
    date = now()
    update: TLObject
    if isinstance(peer, ChannelRec):
        if me.id not in peer.admins:
            raise RpcError(403, "CHAT_ADMIN_REQUIRED")
        world.admit_bot_send(me, peer.id, "channel")
        post = world.post(
            peer,
            query.message,
            author_id=me.id,
            entities=entities,
            reply_markup=query.reply_markup,
            reply_to_id=reply_to,
            skip_key=call.key.key_id,
        )
        update = types.UpdateNewChannelMessage(
            message=world.channel_message_view(peer, post, me.id), pts=post.pts, pts_count=1
        )
        msg_id = post.id
    else:
        if me.bot and peer.bot:
            raise RpcError(400, "USER_IS_BOT")
        world.admit_bot_send(me, peer.id, "private")
        sent = world.send_private(
            me,
            peer,
            query.message,
            entities=entities,
            reply_markup=query.reply_markup if me.bot else None,
            reply_to_id=reply_to,
            skip_key=call.key.key_id,
        )
        update = types.UpdateNewMessage(
            message=world.box_message_view(me, sent), pts=sent.pts, pts_count=1
        )
        msg_id = sent.id
    result = world.updates_for(
        me.id, [types.UpdateMessageID(id=msg_id, random_id=query.random_id), update], date
    )
    if query.random_id:
        world.remember_sent(dedup, result)
    return result


@handles(functions.messages.EditMessageRequest)
async def edit_message(call: Call, query: functions.messages.EditMessageRequest) -> TLObject:
    """Edit the text (and inline markup) of one's own private message or, as an admin, a post.

    Raises MESSAGE_ID_INVALID / MESSAGE_AUTHOR_REQUIRED / CHAT_ADMIN_REQUIRED /
    MESSAGE_NOT_MODIFIED / MESSAGE_EMPTY / MESSAGE_TOO_LONG.
    """
    world, me = call.world, call.me
    text = query.message or ""
    if not text.strip():
        raise RpcError(400, "MESSAGE_EMPTY")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise RpcError(400, "MESSAGE_TOO_LONG")
    peer = call.input_peer(query.peer)
    date = now()
    update: TLObject
    if isinstance(peer, ChannelRec):
        post = world.edit_post(
            peer,
            query.id,
            text,
            editor_id=me.id,
            entities=query.entities or (),
            reply_markup=query.reply_markup,
            skip_key=call.key.key_id,
        )
        update = types.UpdateEditChannelMessage(
            message=world.channel_message_view(peer, post, me.id), pts=peer.pts, pts_count=1
        )
    else:
        own = world.box_message(me, query.id)
        if own is None or own.peer_id != peer.id:
            raise RpcError(400, "MESSAGE_ID_INVALID")
        edited = world.edit_private(
            me,
            query.id,
            text,
            entities=query.entities or (),
            reply_markup=query.reply_markup if me.bot else None,
            skip_key=call.key.key_id,
        )
        update = types.UpdateEditMessage(
            message=world.box_message_view(me, edited), pts=me.pts, pts_count=1
        )
    return world.updates_for(me.id, [update], date)


@handles(functions.messages.DeleteMessagesRequest)
async def delete_messages(
    call: Call, query: functions.messages.DeleteMessagesRequest
) -> types.messages.AffectedMessages:
    """Delete private messages from one's box; ``revoke`` deletes the other side's copies."""
    pts, count = call.world.delete_private(
        call.me, query.id, revoke=bool(query.revoke), skip_key=call.key.key_id
    )
    return types.messages.AffectedMessages(pts=pts, pts_count=count)


@handles(functions.messages.GetDialogsRequest, bots=False)
async def get_dialogs(
    call: Call, query: functions.messages.GetDialogsRequest
) -> types.messages.TypeDialogs:
    """The account's chats (joined channels and private chats), newest first.

    Pages by ``(offset_date, offset_id)`` of the last dialog's top message.
    """
    world, me = call.world, call.me
    entries: list[tuple[int, int, types.Dialog, TLObject | None]] = []
    for channel in world.state.channels.values():
        if me.id not in channel.members:
            continue
        top = channel.messages[-1] if channel.messages else None
        view = world.channel_message_view(channel, top, me.id) if top else None
        entries.append(
            (
                top.date if top else channel.date,
                top.id if top else 0,
                dialog(types.PeerChannel(channel.id), top.id if top else 0, channel.pts),
                view,
            )
        )
    last_by_peer: dict[int, int] = {}
    for i, msg in enumerate(me.box):
        last_by_peer[msg.peer_id] = i
    for peer_id, i in last_by_peer.items():
        msg = me.box[i]
        entries.append(
            (
                msg.date,
                msg.id,
                dialog(types.PeerUser(peer_id), msg.id, None),
                world.box_message_view(me, msg),
            )
        )
    entries.sort(key=lambda e: (e[0], e[1]), reverse=True)
    total = len(entries)
    if timestamp(query.offset_date):
        cutoff = (timestamp(query.offset_date), query.offset_id)
        entries = [e for e in entries if (e[0], e[1]) < cutoff]
    page = entries[: max(0, min(query.limit or 100, 100))]
    dialogs = [e[2] for e in page]
    messages = [e[3] for e in page if e[3] is not None]
    users, chats = world.entities_for(messages, me.id, extra_users=[me.id])
    for d in dialogs:
        if isinstance(d.peer, types.PeerChannel) and all(c.id != d.peer.channel_id for c in chats):
            chats.append(world.channel_view(world.state.channels[d.peer.channel_id], me.id))
    if len(page) == total:
        return types.messages.Dialogs(dialogs=dialogs, messages=messages, chats=chats, users=users)
    return types.messages.DialogsSlice(
        count=total, dialogs=dialogs, messages=messages, chats=chats, users=users
    )


def dialog(peer: types.TypePeer, top: int, pts: int | None) -> types.Dialog:
    """A dialog entry read up to ``top``, with nothing unread."""
    return types.Dialog(
        peer=peer,
        top_message=top,
        read_inbox_max_id=top,
        read_outbox_max_id=top,
        unread_count=0,
        unread_mentions_count=0,
        unread_reactions_count=0,
        unread_poll_votes_count=0,
        notify_settings=types.PeerNotifySettings(),
        pts=pts,
    )


@handles(functions.messages.GetBotCallbackAnswerRequest, bots=False)
async def get_bot_callback_answer(
    call: Call, query: functions.messages.GetBotCallbackAnswerRequest
) -> types.messages.BotCallbackAnswer:
    """Press an inline button: the bot gets updateBotCallbackQuery, its answer comes back.

    Raises MESSAGE_ID_INVALID (no such message from a bot in this chat) /
    BOT_RESPONSE_TIMEOUT (the bot did not answer within ``limits.callback_timeout``).
    """
    bot = call.input_user(query.peer)
    return await call.world.press_button(call.me, bot, query.msg_id, query.data or b"")


@handles(functions.messages.SetBotCallbackAnswerRequest)
async def set_bot_callback_answer(
    call: Call, query: functions.messages.SetBotCallbackAnswerRequest
) -> bool:
    """A bot answers a callback query. Raises QUERY_ID_INVALID (unknown, expired, not its own)."""
    world, me = call.world, call.me
    answer = world.callback_queries.get(query.query_id)
    if answer is None or answer.done() or world.callback_owners.get(query.query_id) != me.id:
        raise RpcError(400, "QUERY_ID_INVALID")
    answer.set_result(
        types.messages.BotCallbackAnswer(
            cache_time=query.cache_time,
            alert=query.alert,
            has_url=bool(query.url),
            message=query.message,
            url=query.url,
        )
    )
    return True


@handles(functions.messages.SetTypingRequest)
async def set_typing(call: Call, query: functions.messages.SetTypingRequest) -> bool:
    """Accepted and ignored (nobody watches typing in the sandbox)."""
    call.input_peer(query.peer)
    return True


@handles(functions.messages.ReadHistoryRequest, bots=False)
async def read_history(
    call: Call, query: functions.messages.ReadHistoryRequest
) -> types.messages.AffectedMessages:
    """Accepted; the sandbox keeps no read state (pts unchanged)."""
    call.input_peer(query.peer)
    return types.messages.AffectedMessages(pts=call.me.pts, pts_count=0)


@handles(functions.messages.CheckChatInviteRequest, bots=False)
async def check_chat_invite(
    call: Call, query: functions.messages.CheckChatInviteRequest
) -> types.TypeChatInvite:
    """What an invite link opens: chatInviteAlready for members, else a chatInvite preview.

    Raises INVITE_HASH_INVALID.
    """
    world, me = call.world, call.me
    channel = world.by_invite(query.hash)
    if me.id in channel.members:
        return types.ChatInviteAlready(chat=world.channel_view(channel, me.id))
    return types.ChatInvite(
        title=channel.title,
        photo=types.PhotoEmpty(id=0),
        participants_count=len(channel.members),
        color=0,
        channel=True,
        broadcast=True,
        public=channel.username is not None,
    )


@handles(functions.messages.ImportChatInviteRequest, bots=False)
async def import_chat_invite(
    call: Call, query: functions.messages.ImportChatInviteRequest
) -> types.Updates:
    """Join the channel behind an invite link (private ones too).

    Raises INVITE_HASH_INVALID / USER_ALREADY_PARTICIPANT / CHANNELS_TOO_MUCH (the
    account is already in ``limits.channels_per_user`` channels).
    """
    world, me = call.world, call.me
    channel = world.by_invite(query.hash)
    if me.id in channel.members:
        raise RpcError(400, "USER_ALREADY_PARTICIPANT")
    world.check_channel_cap(me)
    world.add_member(channel, me.id)
    return types.Updates(
        updates=[types.UpdateChannel(channel_id=channel.id)],
        users=[],
        chats=[world.channel_view(channel, me.id)],
        date=now(),
        seq=0,
    )
