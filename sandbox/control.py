"""The sandbox's control API: what a test or the demo does to the world from outside.

Every operation takes and returns plain data (ints, strings, lists, msgspec Structs),
so :mod:`sandbox.http` serves the same operations as JSON. Operations run on the world's
event loop; they never block.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from telethon.tl import types
from telethon.tl.tlobject import TLObject

from sandbox.backend import RpcError
from sandbox.botlimits import ChatKind
from sandbox.faults import Faults, normalize_method
from sandbox.posting import PostRange, Streams, StreamStatus, post_batch
from sandbox.world import (
    BoxMessage,
    ChannelMessage,
    ChannelRec,
    Limits,
    UserRec,
    World,
    normalize_phone,
    tl_from_bytes,
)

#: Buttons as given to the control API: rows of ``"label"`` (data = label) or
#: ``{"text": ..., "data": ...}``.
ButtonsSpec = list[list[str | dict[str, str]]]


class Account(msgspec.Struct):
    """A user or bot account; ``token`` is set for bots only."""

    id: int
    access_hash: int
    first_name: str
    username: str | None
    phone: str | None
    bot: bool
    token: str | None = None


class Channel(msgspec.Struct):
    """A broadcast channel."""

    id: int
    access_hash: int
    title: str
    username: str | None
    members: list[int]
    pts: int
    invite_link: str


class Button(msgspec.Struct):
    """An inline callback button."""

    text: str
    data: str


class Message(msgspec.Struct):
    """A message as the control API reports it (a box copy or a channel post)."""

    id: int
    peer_id: int  # the other user of a private chat, or the channel id
    sender_id: int | None
    date: int
    text: str
    out: bool = False
    buttons: list[list[Button]] = []
    edit_date: int | None = None  # set once the message was edited
    media: str | None = None  # channel posts: the kind of media posted with it
    views: int | None = None  # channel posts
    forwards: int | None = None  # channel posts


class ChatSends(msgspec.Struct):
    """What one bot sent to one chat through MTProto, under the bot sending limits.

    ``times`` are the unix times of accepted sends, oldest first (the last 10,000);
    ``refused`` counts sends answered FLOOD_WAIT.
    """

    bot_id: int
    chat_id: int
    kind: ChatKind
    sent: int
    refused: int
    times: list[float]


class CallbackAnswer(msgspec.Struct):
    """A bot's answer to a pressed inline button."""

    message: str | None
    alert: bool
    url: str | None


def _markup(buttons: ButtonsSpec | None) -> TLObject | None:
    if not buttons:
        return None
    rows = []
    for row in buttons:
        cells = []
        for cell in row:
            text, data = (cell, cell) if isinstance(cell, str) else (cell["text"], cell["data"])
            cells.append(
                types.KeyboardInlineButton(text, types.InlineButtonTypeCallback(data.encode()))
            )
        rows.append(types.KeyboardButtonRow(buttons=cells))
    return types.ReplyInlineMarkup(rows=rows)


def _buttons(raw: bytes | None) -> list[list[Button]]:
    if raw is None:
        return []
    markup = tl_from_bytes(raw)
    return [
        [
            Button(
                text=b.text,
                data=(getattr(getattr(b, "type", None), "data", None) or b"").decode(
                    "utf-8", "replace"
                ),
            )
            for b in row.buttons
        ]
        for row in getattr(markup, "rows", [])
    ]


def _account(user: UserRec, token: str | None = None) -> Account:
    return Account(
        id=user.id,
        access_hash=user.access_hash,
        first_name=user.first_name,
        username=user.username,
        phone=user.phone,
        bot=user.bot,
        token=token,
    )


def _channel(channel: ChannelRec) -> Channel:
    return Channel(
        id=channel.id,
        access_hash=channel.access_hash,
        title=channel.title,
        username=channel.username,
        members=list(channel.members),
        pts=channel.pts,
        invite_link=f"https://t.me/+{channel.invite_hash}",
    )


def _box(owner: UserRec, msg: BoxMessage) -> Message:
    return Message(
        id=msg.id,
        peer_id=msg.peer_id,
        sender_id=msg.sender_id,
        date=msg.date,
        text=msg.text,
        out=msg.sender_id == owner.id,
        buttons=_buttons(msg.reply_markup),
        edit_date=msg.edit_date,
    )


def _post(channel: ChannelRec, msg: ChannelMessage) -> Message:
    return Message(
        id=msg.id,
        peer_id=channel.id,
        sender_id=msg.author_id,
        date=msg.date,
        text=msg.text,
        buttons=_buttons(msg.reply_markup),
        edit_date=msg.edit_date,
        media=msg.media,
        views=msg.views,
        forwards=msg.forwards,
    )


class Control:
    """Operations on a running sandbox's world.

    Errors are raised as :class:`~sandbox.backend.RpcError` with Telegram's names
    (``USER_ID_INVALID``, ``CHANNEL_INVALID``, ``USERNAME_OCCUPIED``, ...).
    """

    #: The operations :mod:`sandbox.http` exposes, by name.
    OPERATIONS = (
        "create_user",
        "create_bot",
        "create_channel",
        "add_member",
        "remove_member",
        "post",
        "post_many",
        "start_posting",
        "posting_status",
        "stop_posting",
        "send_message",
        "press",
        "edit_post",
        "delete_posts",
        "edit_message",
        "delete_messages",
        "last_login_code",
        "set_password",
        "inbox",
        "outbox",
        "chat",
        "memberships",
        "history",
        "account",
        "bot_token",
        "channel",
        "online",
        "calls",
        "call_times",
        "flood",
        "drop",
        "delay",
        "stall",
        "withhold_updates",
        "delay_updates",
        "flood_chat",
        "bot_sends",
        "clear_faults",
        "forget_auth_keys",
        "set_limits",
        "reset_bot_sends",
    )

    def __init__(self, world: World) -> None:
        self.world = world
        self.streams = Streams(world)

    @property
    def faults(self) -> Faults:
        """The world's fault set."""
        return self.world.faults

    # -------------------------------------------------------------- accounts & channels

    def create_user(
        self, phone: str, first_name: str, last_name: str = "", username: str | None = None
    ) -> Account:
        """Register a user; log in with its phone and the code from ``last_login_code``."""
        return _account(self.world.create_user(phone, first_name, last_name, username))

    def create_bot(self, username: str, first_name: str | None = None) -> Account:
        """Create a bot (username must end in "bot"); ``token`` logs it in."""
        bot, token = self.world.create_bot(username, first_name or username)
        return _account(bot, token)

    def create_channel(
        self, title: str, username: str | None = None, creator_id: int | None = None
    ) -> Channel:
        """Create a broadcast channel (public when it has a username; ``invite_link`` joins)."""
        return _channel(self.world.create_channel(title, username, creator_id))

    def add_member(self, channel_id: int, user_id: int, admin: bool = False) -> Channel:
        """Add a member (the only way into a private channel); ``admin`` lets it post."""
        channel = self.world.channel(channel_id)
        self.world.add_member(channel, user_id, admin)
        return _channel(channel)

    def remove_member(self, channel_id: int, user_id: int) -> Channel:
        """Remove a member. Raises USER_NOT_PARTICIPANT."""
        channel = self.world.channel(channel_id)
        self.world.remove_member(channel, user_id)
        return _channel(channel)

    def account(self, ref: int | str) -> Account:
        """An account by id or username. Raises USER_ID_INVALID / USERNAME_NOT_OCCUPIED."""
        return _account(self._user(ref))

    def bot_token(self, ref: int | str) -> str:
        """A bot's login token, as its creator got it. Raises BOT_INVALID for a non-bot."""
        user = self._user(ref)
        if not user.bot or not user.bot_secret:
            raise RpcError(400, "BOT_INVALID")
        return f"{user.id}:{user.bot_secret}"

    def channel(self, ref: int | str) -> Channel:
        """A channel by id or username. Raises CHANNEL_INVALID / USERNAME_NOT_OCCUPIED."""
        return _channel(self._channel(ref))

    def _user(self, ref: int | str) -> UserRec:
        if isinstance(ref, str) and ref.isdigit():  # an id that came as text (HTTP, CLI)
            ref = int(ref)
        if isinstance(ref, int):
            return self.world.user(ref)
        found = self.world.by_username(ref)
        if found is None or found[0] != "user":
            raise RpcError(400, "USERNAME_NOT_OCCUPIED")
        return self.world.user(found[1])

    def _channel(self, ref: int | str) -> ChannelRec:
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        if isinstance(ref, int):
            return self.world.channel(ref)
        found = self.world.by_username(ref)
        if found is None or found[0] != "channel":
            raise RpcError(400, "USERNAME_NOT_OCCUPIED")
        return self.world.channel(found[1])

    # -------------------------------------------------------------- messages

    def post(
        self,
        channel: int | str,
        text: str,
        buttons: ButtonsSpec | None = None,
        media: str | None = None,
        views: int | None = None,
        forwards: int | None = None,
    ) -> Message:
        """Post in a channel as its admin; every connected member gets it live.

        ``media``: the post carries media of that kind: ``photo``, ``location``,
        ``document``, ``video``, ``video_note``, ``gif``, ``audio``, ``voice``, ``sticker``
        (ValueError otherwise; ``text`` is then its caption and may be empty).
        ``views`` / ``forwards``: the counters the post shows.
        """
        rec = self._channel(channel)
        msg = self.world.post(
            rec, text, reply_markup=_markup(buttons), media=media, views=views, forwards=forwards
        )
        return _post(rec, msg)

    def post_many(
        self,
        channels: int | str | list[int | str],
        count: int = 1,
        text: str = "post {n}",
        media: str | None = None,
    ) -> list[PostRange]:
        """Make ``count`` posts in each of ``channels`` in one call, round-robin.

        Each post is stored and pushed live exactly as by ``post`` (thousands per second).
        In ``text``, ``{n}`` becomes the post's number in its channel for this call
        (0-based) and ``{channel}`` the channel id. Returns one ``PostRange(channel_id,
        first_id, last_id, count)`` per channel, in the order given. ``media`` as in
        ``post``, on every post. Raises CHANNEL_INVALID / USERNAME_NOT_OCCUPIED, and
        ValueError (400 BAD_REQUEST) for no channels, ``count`` < 1, more than 100,000
        posts in all, or an unknown media kind.
        """
        return post_batch(self.world, self._channels(channels), count, text, media)

    def start_posting(
        self,
        channels: int | str | list[int | str],
        per_second: float,
        count: int | None = None,
        duration: float | None = None,
        text: str = "post {n}",
    ) -> int:
        """Post in the background at ``per_second`` posts in all, round-robin over channels.

        Stops after ``count`` posts in all, after ``duration`` s, or at ``stop_posting``
        (whichever comes first). ``text`` as in ``post_many`` (``{n}`` counts per channel
        over the whole stream). Returns the stream id. Raises CHANNEL_INVALID /
        USERNAME_NOT_OCCUPIED and ValueError (no channels, ``per_second`` <= 0).
        """
        return self.streams.start(self._channels(channels), per_second, text, count, duration)

    def posting_status(self, stream: int) -> StreamStatus:
        """``StreamStatus(id, running, posted, ranges)`` of a stream. ValueError if unknown."""
        return self.streams.status(stream)

    async def stop_posting(self, stream: int) -> StreamStatus:
        """Stop a stream (no-op if it ended) and return what it posted. ValueError if unknown."""
        return await self.streams.stop(stream)

    def _channels(self, refs: int | str | list[int | str]) -> list[ChannelRec]:
        return [self._channel(r) for r in (refs if isinstance(refs, list) else [refs])]

    def send_message(
        self,
        sender: int | str,
        to: int | str,
        text: str,
        buttons: ButtonsSpec | None = None,
    ) -> Message:
        """Send a private message as ``sender`` (a user, or a bot with inline ``buttons``).

        Returns the sender's copy. Raises USER_IS_BOT for bot-to-bot.
        """
        src, dst = self._user(sender), self._user(to)
        if src.bot and dst.bot:
            raise RpcError(400, "USER_IS_BOT")
        markup = _markup(buttons) if src.bot else None
        return _box(src, self.world.send_private(src, dst, text, reply_markup=markup))

    async def press(
        self,
        account: int | str,
        bot: int | str,
        message_id: int,
        data: str | None = None,
        text: str | None = None,
    ) -> CallbackAnswer:
        """Press an inline button as a user: ``message_id`` is the id in the user's inbox.

        The button is named by its callback ``data`` or by its label ``text`` (the first
        button with that label). Waits for the bot's answer (up to
        ``limits.callback_timeout``). Raises MESSAGE_ID_INVALID / BOT_RESPONSE_TIMEOUT,
        BUTTON_DATA_INVALID (no button with that label), ValueError (neither given).
        """
        user, sender = self._user(account), self._user(bot)
        if data is None:
            if text is None:
                raise ValueError("press needs the button's data or its text")
            msg = self.world.box_message(user, message_id)
            labels = {b.text: b.data for row in _buttons(msg and msg.reply_markup) for b in row}
            if text not in labels:
                raise RpcError(400, "BUTTON_DATA_INVALID")
            data = labels[text]
        answer = await self.world.press_button(user, sender, message_id, data.encode())
        return CallbackAnswer(message=answer.message, alert=bool(answer.alert), url=answer.url)

    def edit_post(
        self, channel: int | str, message_id: int, text: str, buttons: ButtonsSpec | None = None
    ) -> Message:
        """Edit a post as the channel's admin; members get UpdateEditChannelMessage live."""
        rec = self._channel(channel)
        return _post(
            rec, self.world.edit_post(rec, message_id, text, reply_markup=_markup(buttons))
        )

    def delete_posts(self, channel: int | str, message_ids: list[int]) -> int:
        """Delete posts as the channel's admin; returns how many existed and went."""
        return self.world.delete_posts(self._channel(channel), message_ids)[1]

    def edit_message(
        self,
        sender: int | str,
        message_id: int,
        text: str,
        buttons: ButtonsSpec | None = None,
    ) -> Message:
        """Edit a private message ``sender`` sent (``message_id`` from its outbox)."""
        src = self._user(sender)
        markup = _markup(buttons) if src.bot else None
        return _box(src, self.world.edit_private(src, message_id, text, reply_markup=markup))

    def delete_messages(
        self, account: int | str, message_ids: list[int], revoke: bool = True
    ) -> int:
        """Delete private messages from an account's box (``revoke``: both sides').

        Returns how many of the account's own messages went.
        """
        owner = self._user(account)
        return self.world.delete_private(owner, message_ids, revoke=revoke)[1]

    def inbox(self, account: int | str, peer: int | str | None = None) -> list[Message]:
        """The messages an account received (from ``peer`` only, if given), oldest first."""
        owner = self._user(account)
        peer_id = self._user(peer).id if peer is not None else None
        return [
            _box(owner, m)
            for m in owner.box
            if m.sender_id != owner.id and (peer_id is None or m.peer_id == peer_id)
        ]

    def outbox(self, account: int | str, peer: int | str | None = None) -> list[Message]:
        """The messages an account sent in private chats (to ``peer`` only, if given)."""
        owner = self._user(account)
        peer_id = self._user(peer).id if peer is not None else None
        return [
            _box(owner, m)
            for m in owner.box
            if m.sender_id == owner.id and (peer_id is None or m.peer_id == peer_id)
        ]

    def chat(self, account: int | str, peer: int | str) -> list[Message]:
        """Both directions of ``account``'s private chat with ``peer``, oldest first, as the
        account sees them now (current text and buttons, ``edit_date`` once edited; ``out``
        tells who sent each)."""
        owner, other = self._user(account), self._user(peer)
        return [_box(owner, m) for m in self.world.chat_messages(owner, other.id)]

    def memberships(self, account: int | str) -> list[int]:
        """The ids of the channels the account is a member of (its count is what
        ``limits.channels_per_user`` caps)."""
        user = self._user(account)
        return [c.id for c in self.world.state.channels.values() if user.id in c.members]

    def history(self, channel: int | str) -> list[Message]:
        """A channel's posts, oldest first."""
        rec = self._channel(channel)
        return [_post(rec, m) for m in rec.messages]

    def last_login_code(self, phone: str) -> str | None:
        """The code of the last auth.sendCode for this phone, until it is used."""
        issued = self.world.login_codes.get(normalize_phone(phone))
        return issued[1] if issued else None

    def set_password(self, account: int | str, password: str, hint: str = "") -> Account:
        """Turn on two-step verification: a login by code then also needs ``password``.

        Only the SRP verifier is stored (computing it takes about 0.1 s).
        """
        user = self._user(account)
        self.world.set_password(user, password, hint)
        return _account(user)

    # -------------------------------------------------------------- observation

    def online(self, account: int | str) -> bool:
        """Whether any auth key of the account has a connected session receiving updates."""
        user = self._user(account)
        return any(self.world.live_session(k) for k in self.world.keys_of(user.id))

    def calls(self, method: str | None = None) -> dict[str, int]:
        """How often each method (or just ``method``, e.g. "messages.getHistory") ran."""
        name = normalize_method(method)
        if name is None:
            return dict(self.world.calls)
        return {name: self.world.calls.get(name, 0)}

    def call_times(self, account: int | str, method: str) -> list[float]:
        """The unix times at which ``account`` called ``method`` (e.g.
        "contacts.resolveUsername"), oldest first, the last 10,000: every call that reached
        the world, refused ones (flood waits, errors) included. Tests prove a client's
        rate with it."""
        user = self._user(account)
        name = normalize_method(method)
        if name is None:
            raise ValueError("call_times needs a method")
        return list(self.world.call_times.get((user.id, name), ()))

    # -------------------------------------------------------------- faults

    def flood(
        self,
        method: str | None,
        seconds: int,
        count: int | None = 1,
        duration: float | None = None,
        user_id: int | None = None,
    ) -> int:
        """Answer ``FLOOD_WAIT_<seconds>`` to the next ``count`` calls (or for ``duration`` s)."""
        return self.faults.add(
            "flood", method, seconds=seconds, count=count, duration=duration, user_id=user_id
        )

    def drop(
        self,
        method: str | None,
        when: Literal["before", "after"] = "before",
        count: int | None = 1,
        user_id: int | None = None,
    ) -> int:
        """Drop the connection before or after the next ``count`` calls execute."""
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        kind: Literal["drop_before", "drop_after"] = (
            "drop_before" if when == "before" else "drop_after"
        )
        return self.faults.add(kind, method, count=count, user_id=user_id)

    def delay(
        self,
        method: str | None,
        seconds: float,
        count: int | None = None,
        duration: float | None = None,
        user_id: int | None = None,
    ) -> int:
        """Hold the answer to matching calls (every method with None) by ``seconds``."""
        return self.faults.add(
            "delay", method, seconds=seconds, count=count, duration=duration, user_id=user_id
        )

    def stall(self, user_id: int | None = None, duration: float | None = None) -> int:
        """Make an account's connections (every account's with None) silent, until cleared
        or for ``duration`` s: queries are held unanswered and updates are not pushed
        (they are lost on the way, to be fetched as a difference)."""
        return self.faults.add("stall", None, count=None, duration=duration, user_id=user_id)

    def withhold_updates(self, channel: int | str, on: bool = True) -> bool:
        """Withhold (``on``) or release the live updates of one channel; returns ``on``.

        While withheld, the channel's posts, edits and deletions are stored and readable
        (history, ``updates.getChannelDifference``) but pushed to nobody, and
        ``updates.getDifference`` does not name the channel (no updateChannelTooLong): a
        client learns of them only by asking the channel itself. Released, the next live
        update shows the client a pts gap, which Telethon fills from the channel's
        difference. ``clear_faults`` releases every channel.
        """
        rec = self._channel(channel)
        self.faults.release("withhold", rec.id)
        if on:
            self.faults.add("withhold", None, count=None, peer_id=rec.id)
        return on

    def delay_updates(self, channel: int | str, seconds: float) -> float:
        """Push the channel's live updates ``seconds`` late, in order (0 stops delaying);
        returns ``seconds``. As Telegram does for big channels: a monitor sees each post
        late, or first in history. ``clear_faults`` stops it too. ValueError if negative.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        rec = self._channel(channel)
        self.faults.release("delay_updates", rec.id)
        if seconds > 0:
            self.faults.add("delay_updates", None, seconds=seconds, count=None, peer_id=rec.id)
        return seconds

    def flood_chat(self, bot: int | str, chat: int | str, seconds: int) -> int:
        """Force a flood wait on one bot for one chat: for the next ``seconds``, the bot's
        messages.sendMessage to ``chat`` (a user or a channel) answers
        ``FLOOD_WAIT_<seconds left>``, whatever the limits; other chats are not affected.
        Returns the fault id. Raises BOT_INVALID for a non-bot, ValueError for seconds < 1.
        """
        sender = self._user(bot)
        if not sender.bot:
            raise RpcError(400, "BOT_INVALID")
        if seconds < 1:
            raise ValueError("seconds must be >= 1")
        return self.faults.add(
            "chat_flood",
            "messages.sendMessage",
            count=None,
            duration=seconds,
            user_id=sender.id,
            peer_id=self._peer_id(chat),
        )

    def bot_sends(self, bot: int | str, chat: int | str | None = None) -> list[ChatSends]:
        """Per chat (or for ``chat`` only), what ``bot`` sent through MTProto under the
        sending limits: ``ChatSends(bot_id, chat_id, kind, sent, refused, times)``. With
        ``limits.bot_private_per_s`` = r and ``bot_private_burst`` = b, a sender that
        honours the limits has at most ``b + r * T`` sends in any window of T seconds
        (likewise per channel and per bot overall), and ``refused`` stays 0.
        """
        bot_id = self._user(bot).id
        chat_id = self._peer_id(chat) if chat is not None else None
        return [
            ChatSends(
                bot_id=bot_id,
                chat_id=cid,
                kind=entry.kind,
                sent=entry.sent,
                refused=entry.refused,
                times=list(entry.times),
            )
            for (bid, cid), entry in self.world.bot_limiter.logs.items()
            if bid == bot_id and (chat_id is None or cid == chat_id)
        ]

    def _peer_id(self, ref: int | str) -> int:
        """A user's or a channel's id, by id or username."""
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        if isinstance(ref, int):
            if ref in self.world.state.users or ref in self.world.state.channels:
                return ref
            raise RpcError(400, "PEER_ID_INVALID")
        found = self.world.by_username(ref)
        if found is None:
            raise RpcError(400, "USERNAME_NOT_OCCUPIED")
        return found[1]

    def clear_faults(self) -> None:
        """Remove every injected fault (withheld channels and forced chat floods too)."""
        self.faults.clear()

    def forget_auth_keys(self, account: int | str) -> int:
        """Forget every auth key of an account (clients then get -404); returns how many."""
        keys = self.world.keys_of(self._user(account).id)
        for key_id in keys:
            self.world.forget_auth_key(key_id)
        return len(keys)

    def set_limits(self, **limits: float) -> Limits:
        """Change some of the world's limits (see :class:`sandbox.world.Limits`); returns
        all of them (no arguments: just read them).

        Among them: ``channel_difference_too_long`` (the pts gap beyond which
        getChannelDifference answers channelDifferenceTooLong), ``channels_per_user``
        (default 500; CHANNELS_TOO_MUCH past it), ``callback_timeout``, and the bot
        sending limits ``bot_limits`` (on/off), ``bot_per_s``, ``bot_burst``,
        ``bot_private_per_s``, ``bot_private_burst``, ``bot_channel_per_min``,
        ``bot_channel_burst``. Raises TypeError for an unknown name and ValueError for a
        negative limit or a rate that is not positive.
        """
        self.world.limits = msgspec.structs.replace(self.world.limits, **limits)
        return self.world.limits

    def reset_bot_sends(self) -> None:
        """Forget every bot's send log and refill every bucket (between test phases)."""
        self.world.bot_limiter.reset()
