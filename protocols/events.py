"""Events published on the bus (PUB/SUB through the broker), and their topics.

A subscriber receives every event whose topic starts with a prefix it subscribed to.
Events are at most once and only to current subscribers; state that must survive lives
in actors and stores, not on the bus. Every topic is built by a function here, so a
publisher and its subscribers cannot spell one differently:

* :func:`actor_topic` ``actor.<address>.``: :class:`ActorStateChanged`;
* :func:`session_topic` ``session.<account>.``: :class:`SessionState`;
* :func:`post_topic` ``post.<channel_id>.``: :class:`NewPost`, :class:`EditedPost`,
  :class:`DeletedPost`;
* :func:`message_topic` ``message.<account>.``: :class:`NewMessage` (private chats of a
  user account);
* :func:`bot_topic` ``bot.<account>.``: :class:`BotCommand`, :class:`CallbackQuery`;
* :func:`stored_topic` ``stored.<channel_id>.``: :class:`PostStored`, :class:`PostEdited`,
  :class:`PostDeleted`, published by the parser after the store committed them (a
  wake-up for consumers, who read ``PostsSince`` from the store for the record).

Called with no argument, each gives the prefix that matches every topic of its kind.
"""

from __future__ import annotations

from typing import Literal

from protocols.base import Message
from protocols.session import ChatMessage
from protocols.store import Post


def _topic(kind: str, name: str) -> str:
    # The closing dot keeps a subscription to ``post.-100123.`` from also matching
    # ``post.-1001234.``: ZeroMQ matches topics by prefix.
    return f"{kind}.{name}." if name else f"{kind}."


def actor_topic(address: str = "") -> str:
    """``actor.<address>``: state changes of the supervised actor at ``address``."""
    return _topic("actor", address)


def session_topic(account: str = "") -> str:
    """``session.<account>``: connection and authorization of a session actor."""
    return _topic("session", account)


def post_topic(channel_id: int | None = None) -> str:
    """``post.<channel_id>``: posts, edits and deletions in a channel (marked id)."""
    return _topic("post", "" if channel_id is None else str(channel_id))


def message_topic(account: str = "") -> str:
    """``message.<account>``: messages in private chats and groups of a user account."""
    return _topic("message", account)


def bot_topic(account: str = "") -> str:
    """``bot.<account>``: commands and button presses sent to a bot account."""
    return _topic("bot", account)


def stored_topic(channel_id: int | None = None) -> str:
    """``stored.<channel_id>``: posts of a channel committed to the store."""
    return _topic("stored", "" if channel_id is None else str(channel_id))


class ActorStateChanged(Message):
    """A supervised actor changed state (running, restarting, failed, stopped)."""

    address: str
    state: str
    restarts: int = 0
    reason: str = ""


SessionStateName = Literal[
    "connecting",
    "connected",
    "authorized",
    "unauthorized",
    "flood-wait",
    "disconnected",
    "failed",
]


class SessionState(Message):
    """A session actor's connection or authorization changed."""

    account: str
    state: SessionStateName
    reason: str = ""
    retry_after: float = 0.0


class NewPost(Message):
    """A new post in a channel the account is a member of."""

    account: str
    channel_id: int
    message: ChatMessage


class EditedPost(Message):
    account: str
    channel_id: int
    message: ChatMessage


class DeletedPost(Message):
    account: str
    channel_id: int
    message_ids: list[int]


class NewMessage(Message):
    """A new message in a private chat or group of a user account."""

    account: str
    message: ChatMessage


class BotCommand(Message):
    """A ``/command args`` sent to a bot account; ``edited`` when the sender edited an
    earlier command message (``message_id`` is that message's id)."""

    account: str
    command: str
    args: str
    chat_id: int
    user_id: int
    message_id: int
    username: str = ""
    edited: bool = False


class CallbackQuery(Message):
    """An inline button pressed under a bot's message; answer with ``AnswerCallback``."""

    account: str
    query_id: int
    data: bytes
    chat_id: int
    user_id: int
    message_id: int


class PostStored(Message):
    """A new post was committed to the store as ``post.seq``."""

    post: Post


class PostEdited(Message):
    """An edit of a post was committed (``post.seq`` is the edit's place)."""

    post: Post


class PostDeleted(Message):
    """Posts were marked deleted in the store, up to sequence ``last_seq``."""

    channel_id: int
    message_ids: list[int]
    last_seq: int = 0


MESSAGES: tuple[type[Message], ...] = (
    ActorStateChanged,
    SessionState,
    NewPost,
    EditedPost,
    DeletedPost,
    NewMessage,
    BotCommand,
    CallbackQuery,
    PostStored,
    PostEdited,
    PostDeleted,
)
