"""Telethon objects and errors to Switchboard's typed messages.

Nothing Telethon-shaped crosses an actor boundary: every reply and event is built here
from plain values, and every Telethon error becomes one typed error body.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from telethon import errors as tg_errors
from telethon import utils
from telethon.errors.rpcerrorlist import rpc_errors_dict, rpc_errors_re
from telethon.tl import types

from protocols import errors
from protocols.session import Button, ChatMessage, Dialog, Peer, User

# Telegram's error name of each of Telethon's error classes: an instance of a known class
# carries only its HTTP-like kind (``BAD_REQUEST``) in ``message``, not the name.
_ERROR_NAMES: dict[type, str] = {cls: name for name, cls in rpc_errors_dict.items()}
_ERROR_NAMES.update({cls: pattern.replace("(\\d+)", "X") for pattern, cls in rpc_errors_re})
# Telegram errors that mean "no such thing" rather than "you did it wrong".
_NOT_FOUND = frozenset(
    {
        "USERNAME_NOT_OCCUPIED",
        "USERNAME_INVALID",
        "INVITE_HASH_INVALID",
        "INVITE_HASH_EXPIRED",
        "PEER_ID_INVALID",
        "CHANNEL_INVALID",
        "CHAT_ID_INVALID",
        "MSG_ID_INVALID",
        "MESSAGE_ID_INVALID",
        "USER_ID_INVALID",
    }
)
# Telegram errors that mean "this account may not do that here".
_FORBIDDEN = frozenset(
    {
        "CHANNEL_PRIVATE",
        "CHAT_WRITE_FORBIDDEN",
        "CHAT_ADMIN_REQUIRED",
        "MESSAGE_AUTHOR_REQUIRED",
        "MESSAGE_DELETE_FORBIDDEN",
        "USER_BANNED_IN_CHANNEL",
        "USER_NOT_PARTICIPANT",
    }
)


def user(entity: types.User) -> User:
    return User(
        id=entity.id,
        first_name=entity.first_name or "",
        last_name=entity.last_name or "",
        username=entity.username or "",
        phone=entity.phone or "",
        bot=bool(entity.bot),
    )


def peer(entity: Any) -> Peer:
    """A resolved user, chat or channel (marked id, as Telethon's ``get_peer_id``)."""
    peer_id = utils.get_peer_id(entity)
    if isinstance(entity, types.User):
        name = " ".join(p for p in (entity.first_name, entity.last_name) if p)
        return Peer(id=peer_id, kind="user", title=name, username=entity.username or "")
    if isinstance(entity, types.Channel):
        return Peer(
            id=peer_id,
            kind="channel",
            title=entity.title or "",
            username=entity.username or "",
            broadcast=bool(entity.broadcast),
        )
    return Peer(id=peer_id, kind="group", title=getattr(entity, "title", "") or "")


def input_peer(peer: Any) -> Peer:
    """The Peer an input peer names, without asking Telegram: its id and kind only."""
    if isinstance(peer, types.InputPeerChannel):
        kind: Literal["user", "group", "channel"] = "channel"
    elif isinstance(peer, types.InputPeerChat):
        kind = "group"
    else:
        kind = "user"
    return Peer(id=utils.get_peer_id(peer), kind=kind)


def buttons(markup: Any) -> list[list[Button]]:
    """Inline keyboard rows of a message (empty for anything else)."""
    if not isinstance(markup, types.ReplyInlineMarkup):
        return []
    rows = []
    for row in markup.rows:
        out = []
        for b in row.buttons:
            # This layer's inline buttons are KeyboardInlineButton(text, type=...).
            kind = getattr(b, "type", None)
            if isinstance(kind, types.InlineButtonTypeCallback):
                out.append(Button(text=b.text, data=kind.data or b""))
            elif isinstance(kind, types.InlineButtonTypeUrl):
                out.append(Button(text=b.text, url=kind.url))
            else:
                out.append(Button(text=getattr(b, "text", "")))
        rows.append(out)
    return rows


def message(msg: Any) -> ChatMessage:
    """A Telethon Message (or MessageService) as a ChatMessage."""
    reply = getattr(msg, "reply_to", None)
    return ChatMessage(
        id=msg.id,
        chat_id=msg.chat_id or 0,
        date=int(msg.date.timestamp()) if msg.date else 0,
        text=getattr(msg, "message", "") or "",
        sender_id=msg.sender_id or 0,
        reply_to=getattr(reply, "reply_to_msg_id", 0) or 0,
        edit_date=int(msg.edit_date.timestamp()) if getattr(msg, "edit_date", None) else 0,
        views=getattr(msg, "views", 0) or 0,
        buttons=buttons(getattr(msg, "reply_markup", None)),
        media=media_kind(getattr(msg, "media", None)),
        forwards=getattr(msg, "forwards", 0) or 0,
    )


# What a message carries, by the class of its media; documents are told apart by their
# attributes (see _document_kind).
_MEDIA_KINDS: dict[type, str] = {
    types.MessageMediaPhoto: "photo",
    types.MessageMediaPoll: "poll",
    types.MessageMediaGeo: "location",
    types.MessageMediaGeoLive: "location",
    types.MessageMediaVenue: "venue",
    types.MessageMediaContact: "contact",
    types.MessageMediaDice: "dice",
    types.MessageMediaGame: "game",
    types.MessageMediaInvoice: "invoice",
    types.MessageMediaWebPage: "webpage",
    types.MessageMediaStory: "story",
}


def media_kind(media: Any) -> str:
    """What a message's ``media`` is: ``photo``, ``video``, ``gif``, ``video_note``,
    ``voice``, ``audio``, ``sticker``, ``document``, ``poll``, ``location``, ``venue``,
    ``contact``, ``dice``, ``game``, ``invoice``, ``webpage``, ``story``; a media class
    this layer does not list is named after it (``MessageMediaPaidMedia`` -> ``paidmedia``);
    ``""`` for none."""
    if media is None or isinstance(media, types.MessageMediaEmpty):
        return ""
    if isinstance(media, types.MessageMediaDocument):
        return _document_kind(media.document)
    kind = _MEDIA_KINDS.get(type(media))
    return kind or type(media).__name__.removeprefix("MessageMedia").lower()


def _document_kind(document: Any) -> str:
    attributes = {type(a): a for a in getattr(document, "attributes", ())}
    if types.DocumentAttributeSticker in attributes:
        return "sticker"
    if types.DocumentAttributeAnimated in attributes:
        return "gif"
    video = attributes.get(types.DocumentAttributeVideo)
    if video is not None:
        return "video_note" if video.round_message else "video"
    audio = attributes.get(types.DocumentAttributeAudio)
    if audio is not None:
        return "voice" if audio.voice else "audio"
    return "document"


def dialog(d: Any) -> Dialog:
    return Dialog(
        peer=peer(d.entity),
        unread=d.unread_count or 0,
        top_message=d.message.id if d.message else 0,
    )


def error(exc: BaseException, method: str = "") -> errors.Error | None:
    """The typed error for a Telethon (or connection) failure; None if it is a bug of ours.

    A ``ValueError`` is one of those: Telethon's "no such entity" is read as such only
    around its lookups (``actors.session.requests.PeerNotFound``), never here.

    ``method`` names the Telegram method that failed, for ``FloodWait``.
    """
    if isinstance(exc, tg_errors.FloodWaitError):
        return errors.FloodWait(
            retry_after=float(exc.seconds), method=method, message=f"FLOOD_WAIT_{exc.seconds}"
        )
    if isinstance(exc, tg_errors.RPCError):
        name = _ERROR_NAMES.get(type(exc)) or exc.message or type(exc).__name__
        text = f"{name}: {_describe(exc)}"
        if isinstance(exc, tg_errors.UnauthorizedError) or name in _FORBIDDEN:
            return errors.Unauthorized(message=text)
        if name in _NOT_FOUND:
            return errors.NotFound(message=text)
        if isinstance(exc, tg_errors.FloodError):
            return errors.FloodWait(retry_after=0.0, method=method, message=text)
        return errors.BadRequest(message=text)
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError)):
        return errors.Unavailable(message=f"Telegram unreachable: {type(exc).__name__}")
    return None


def _describe(exc: tg_errors.RPCError) -> str:
    """Telethon's message without the request dump it appends."""
    text = str(exc)
    return text.split(" (caused by", 1)[0]
