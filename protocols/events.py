"""Events published on the bus (PUB/SUB through the broker), by topic.

A subscriber receives every event whose topic starts with a prefix it subscribed to.
Events are at most once and only to current subscribers; state that must survive lives
in actors and stores, not on the bus.

Topics:

* ``actor.<address>``: :class:`ActorStateChanged`;
* ``session.<account>``: :class:`SessionState`;
* ``post.<channel_id>``: :class:`NewPost`, :class:`EditedPost`, :class:`DeletedPost`;
* ``message.<account>``: :class:`NewMessage` (private chats of a user account);
* ``bot.<account>``: :class:`BotCommand`, :class:`CallbackQuery`.
"""

from __future__ import annotations

from typing import Literal

from protocols.base import Message
from protocols.session import ChatMessage


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
    """A ``/command args`` sent to a bot account."""

    account: str
    command: str
    args: str
    chat_id: int
    user_id: int
    message_id: int
    username: str = ""


class CallbackQuery(Message):
    """An inline button pressed under a bot's message; answer with ``AnswerCallback``."""

    account: str
    query_id: int
    data: bytes
    chat_id: int
    user_id: int
    message_id: int


MESSAGES: tuple[type[Message], ...] = (
    ActorStateChanged,
    SessionState,
    NewPost,
    EditedPost,
    DeletedPost,
    NewMessage,
    BotCommand,
    CallbackQuery,
)
