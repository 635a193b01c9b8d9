"""The parser conversation: what anyone may ask of ``parser:main``, the channel monitor.

The parser decides which reader account watches which channel, joins and backfills new
channels, turns live session events into stored posts, catches up after downtime and
reconciles what Telegram never pushed. Its failures are typed errors a bot can show:

* ``NotFound``: no such channel (unknown username, bad link);
* ``Unauthorized``: the channel is private and no invite link was given, or a reader is
  banned there (``message`` starts with Telegram's error name, e.g. ``CHANNEL_PRIVATE``);
* ``Unavailable``: every reader is at its channel limit (``CHANNELS_TOO_MUCH``) or out
  of its resolve budget;
* ``FloodWait(retry_after)``: every reader that could take it is flood-waited;
* ``BadRequest``: a reference that is not a username, link or id.
"""

from __future__ import annotations

from protocols.base import Message, Request
from protocols.store import Channel

PARSER_ADDRESS = "parser:main"  # where the parser actor answers this conversation


class ChannelAdded(Message):
    """The channel is watched; ``backfilled`` posts were stored now, ``created`` is False
    when it was already watched (adding twice is one channel)."""

    channel: Channel
    backfilled: int = 0
    created: bool = True


class ChannelRemoved(Message):
    channel_id: int
    left: bool = False


class ReaderInfo(Message):
    """A reader account as the parser sees it."""

    account: str
    state: str = ""
    channels: int = 0
    limit: int = 500
    flood_wait_s: float = 0.0
    resolves_left: int = 0


class ParserStatus(Message):
    readers: list[ReaderInfo] = []
    channels: list[Channel] = []


class AddChannel(Request[ChannelAdded]):
    """Watch a channel: ``@username``, ``t.me/name``, ``t.me/c/<id>``, an invite link
    (``t.me/+…``, ``t.me/joinchat/…``) or a numeric id. ``by`` is recorded (who asked),
    ``backfill`` posts are stored at once (-1: the configured default; at most 1000).
    ``BadRequest`` for a reference that is none of these, ``backfill`` out of range or
    ``by`` over 256 characters."""

    ref: str
    by: str = ""
    backfill: int = -1


class RemoveChannel(Request[ChannelRemoved]):
    """Stop watching a channel (by reference or id); the reader leaves it if configured."""

    ref: str
    by: str = ""


class GetParserStatus(Request[ParserStatus]):
    """Readers with their load and flood waits, and every watched channel's health."""


MESSAGES: tuple[type[Message], ...] = (
    ChannelAdded,
    ChannelRemoved,
    ParserStatus,
    AddChannel,
    RemoveChannel,
    GetParserStatus,
)
