"""Pure parsing for the channel monitor: channel references and posts. No I/O here.

Everything the parser takes from outside passes through these functions first, so a
reference or a message that reaches Telegram or the store is already well formed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from protocols.session import ChatMessage
from protocols.store import MAX_TEXT, PostData

__all__ = ["ChannelRef", "RefError", "marked_channel_id", "parse_ref", "post_data"]

RefKind = Literal["username", "invite", "id"]

# Telegram's public usernames: a letter first, then letters, digits and underscores;
# 5-32 characters on Telegram (a few legacy and sandbox names are shorter: 4 allowed).
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_INVITE_HASH = re.compile(r"[A-Za-z0-9_-]{4,64}")
_TME_HOSTS = frozenset({"t.me", "telegram.me", "telegram.dog", "www.t.me", "www.telegram.me"})
_MAX_REF = 256
# Marked ids of channels are -100 followed by the channel's own id (Bot API convention).
_CHANNEL_MARK = 1_000_000_000_000
_MAX_CHANNEL_ID = 2**40
_NO_MEDIA_KIND = "other"


class RefError(ValueError):
    """A reference that is no username, link or id; the message says what was wrong."""


@dataclass(frozen=True)
class ChannelRef:
    """A parsed channel reference: its ``kind`` and the value to ask Telegram with.

    ``value`` is the username without ``@`` (as written), the invite hash, or the marked
    channel id as text. ``key`` is the same reference normalized, so two spellings of one
    reference are one key (``@News``, ``t.me/news`` and ``https://t.me/news/12``).
    """

    kind: RefKind
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value.lower() if self.kind == 'username' else self.value}"

    @property
    def peer(self) -> str | int:
        """What a session request takes: ``@name``, the invite link, or the marked id."""
        if self.kind == "username":
            return self.value
        if self.kind == "invite":
            return f"https://t.me/+{self.value}"
        return int(self.value)

    @property
    def channel_id(self) -> int:
        """The marked id for an ``id`` reference, else 0."""
        return int(self.value) if self.kind == "id" else 0


def marked_channel_id(raw: int) -> int:
    """The marked id (``-100…``) of a channel given by its bare or marked id.

    Raises RefError for 0 or ids out of Telegram's range.
    """
    if raw < 0:
        bare = -raw - _CHANNEL_MARK
        if not 0 < bare < _MAX_CHANNEL_ID:
            raise RefError(f"{raw} is not a channel id (expected -100… or a positive id)")
        return raw
    if not 0 < raw < _MAX_CHANNEL_ID:
        raise RefError(f"{raw} is not a channel id")
    return -(_CHANNEL_MARK + raw)


def parse_ref(text: str) -> ChannelRef:
    """Parse ``@username``, ``username``, ``t.me/name[/post]``, ``t.me/c/<id>[/post]``,
    ``t.me/+hash``, ``t.me/joinchat/hash``, ``tg://resolve?domain=name`` or an id.

    Raises RefError naming what is wrong (empty, too long, bad characters, not a link).
    """
    ref = text.strip()
    if not ref:
        raise RefError("the reference is empty")
    if len(ref) > _MAX_REF:
        raise RefError(f"the reference is longer than {_MAX_REF} characters")
    if re.fullmatch(r"[+-]?\d+", ref):
        return ChannelRef("id", str(marked_channel_id(int(ref))))
    if ref.startswith("@"):
        return _username(ref[1:], text)
    if ref.lower().startswith("tg://"):
        domain = parse_qs(urlsplit(ref).query).get("domain", [""])[0]
        return _username(domain, text)
    if "/" not in ref and "." not in ref:
        return _username(ref, text)
    return _link(ref, text)


def _link(ref: str, text: str) -> ChannelRef:
    url = urlsplit(ref if "://" in ref else f"https://{ref}")
    if url.scheme not in ("http", "https") or (url.hostname or "").lower() not in _TME_HOSTS:
        raise RefError(f"not a t.me link: {text!r}")
    parts = [p for p in url.path.split("/") if p]
    if not parts:
        raise RefError(f"the link names no channel: {text!r}")
    head = parts[0]
    if head.startswith("+"):
        return _invite(head[1:], text)
    if head == "joinchat" and len(parts) >= 2:
        return _invite(parts[1], text)
    if head == "c" and len(parts) >= 2 and parts[1].isdigit():
        return ChannelRef("id", str(marked_channel_id(int(parts[1]))))
    if head == "s" and len(parts) >= 2:  # t.me/s/<name>: the web preview of a channel
        head = parts[1]
    return _username(head, text)


def _username(name: str, text: str) -> ChannelRef:
    if not _USERNAME.fullmatch(name):
        raise RefError(f"not a valid username: {text!r}")
    return ChannelRef("username", name)


def _invite(invite_hash: str, text: str) -> ChannelRef:
    if not _INVITE_HASH.fullmatch(invite_hash):
        raise RefError(f"not a valid invite link: {text!r}")
    return ChannelRef("invite", invite_hash)


def post_data(message: ChatMessage) -> PostData:
    """The post the store keeps of a channel message.

    Guarantees a value the store accepts: text cut to ``MAX_TEXT`` characters, counters
    never negative, and a media kind (``"other"``) for a message with neither text nor
    one (a service message, or media the session does not name), so every message id is
    kept and catch-up never asks for it again. Raises ValueError for a message without a
    positive id or date.
    """
    if message.id <= 0 or message.date <= 0:
        raise ValueError(f"message {message.id} of {message.chat_id} has no id or date")
    text = message.text[:MAX_TEXT]
    return PostData(
        message_id=message.id,
        date=message.date,
        text=text,
        edit_date=max(message.edit_date, 0),
        media=message.media.lower() or ("" if text else _NO_MEDIA_KIND),
        views=max(message.views, 0),
        forwards=max(message.forwards, 0),
    )
