"""Pure text work of the bot: reading channel references and keywords from untrusted
input, showing untrusted text back safely, and the text of delivered copies.

Nothing here does I/O; everything is tested with tables of input and expected output.
Replies are sent as plain text (no parse mode), so markup in user input is never
interpreted; what is shown back is stripped of control and format characters (bidi
overrides, zero-width joiners) and shortened.
"""

from __future__ import annotations

import re
import time
import unicodedata

from protocols.store import Channel, Post

__all__ = [
    "MAX_MESSAGE",
    "ago",
    "channel_link",
    "channel_name",
    "copy_text",
    "keywords_of",
    "matches",
    "parse_ref",
    "shown",
]

MAX_MESSAGE = 4096  # Telegram's limit on a message's text
MAX_ARGS = 512  # longer command arguments are refused before any parsing

_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{4,31}$")
_KEYWORD = re.compile(r"^[\w-]{1,64}$")
_LINK = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:t|telegram)\.me/"
    r"(?:(?P<invite>\+|joinchat/)(?P<hash>[A-Za-z0-9_-]{4,64})"
    r"|c/(?P<cid>\d{1,15})(?:/\d+)?"
    r"|(?P<name>[A-Za-z][A-Za-z0-9_]{4,31})(?:/\d+)?)/?$"
)
_MARKED_ID = re.compile(r"^-100\d{1,15}$")


def parse_ref(raw: str) -> str | None:
    """A channel reference the parser accepts, normalized; None if ``raw`` is not one.

    ``@name``/``name`` and ``t.me/name`` give ``@name``; invite links give
    ``https://t.me/+hash``; ``t.me/c/<id>`` and ``-100<id>`` give the marked id.
    """
    if len(raw) > 200:
        return None
    if _USERNAME.match(raw.removeprefix("@")):
        return "@" + raw.removeprefix("@")
    if _MARKED_ID.match(raw):
        return raw
    link = _LINK.match(raw)
    if link is None:
        return None
    if link["hash"]:
        return f"https://t.me/+{link['hash']}"
    if link["cid"]:
        return f"-100{link['cid']}"
    return "@" + link["name"]


def keywords_of(words: list[str], limit: int) -> list[str] | None:
    """Lower-cased, deduplicated keywords; None if there are more than ``limit`` or one is
    not a plain word (letters, digits, ``_``, ``-``) of at most 64 characters."""
    found: list[str] = []
    for word in words:
        clean = word.lower()
        if not _KEYWORD.match(clean):
            return None
        if clean not in found:
            found.append(clean)
    return found if len(found) <= limit else None


def matches(text: str, keywords: list[str]) -> bool:
    """Whether a post's ``text`` is meant for a subscription with ``keywords``."""
    if not keywords:
        return True
    lowered = text.lower()
    return any(k in lowered for k in keywords)


def shown(text: str, limit: int = 64) -> str:
    """``text`` safe to show back: no control or format characters, at most ``limit``."""
    clean = _strip(text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _strip(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))


def channel_name(channel: Channel) -> str:
    title = shown(channel.title, 64) if channel.title else ""
    handle = f"@{channel.username}" if channel.username else str(channel.id)
    return f"{title} ({handle})" if title else handle


def channel_link(channel: Channel, message_id: int) -> str:
    """The public link to a post: ``t.me/<username>/<id>``, else ``t.me/c/<id>/<id>``."""
    if channel.username:
        return f"https://t.me/{channel.username}/{message_id}"
    return f"https://t.me/c/{str(channel.id).removeprefix('-100')}/{message_id}"


def copy_text(channel: Channel, post: Post, deleted_mark: bool = False) -> str:
    """The text of a delivered copy: the channel, the post, and a link to the original."""
    head = channel.title or (f"@{channel.username}" if channel.username else str(channel.id))
    body = post.text or (f"[{post.media}]" if post.media else "[post]")
    tail = channel_link(channel, post.message_id)
    if deleted_mark:
        tail = "(deleted in the channel) " + tail
    room = MAX_MESSAGE - len(head) - len(tail) - 4
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{head}\n\n{body}\n\n{tail}"


def ago(unix: int, now: float | None = None) -> str:
    """``5 min ago`` style age of a unix time; ``never`` for 0."""
    if not unix:
        return "never"
    seconds = max(0, int((now if now is not None else time.time()) - unix))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
