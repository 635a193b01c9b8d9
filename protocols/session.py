"""The session conversation: what anyone may ask of ``session:<account>``.

Every request names Telegram things by plain values (usernames, links, ids) and every
reply carries typed data, never Telethon objects. Errors come back as the typed bodies of
:mod:`protocols.errors`: ``FloodWait(retry_after, method)``, ``Unauthorized``,
``NotFound``, ``BadRequest`` (``message`` starts with Telegram's error name), ``Timeout``.

A peer (``PeerRef``) is a username (``"durov"`` or ``"@durov"``), a t.me link
(``"https://t.me/durov"``), an invite link (``"https://t.me/+AbC..."``) or a numeric id
the account has seen before.
"""

from __future__ import annotations

from typing import Literal

from protocols.base import Message, Request

PeerRef = str | int


def session_address(account: str) -> str:
    """The address of an account's session actor, ``session:<account>``."""
    return f"session:{account}"


class User(Message):
    id: int
    first_name: str = ""
    last_name: str = ""
    username: str = ""
    phone: str = ""
    bot: bool = False


class Peer(Message):
    """A resolved user, group or channel."""

    id: int
    kind: Literal["user", "group", "channel"]
    title: str = ""
    username: str = ""
    broadcast: bool = False


class Button(Message):
    """An inline keyboard button: callback ``data`` or a ``url``."""

    text: str
    data: bytes = b""
    url: str = ""


class ChatMessage(Message):
    """One message as Switchboard sees it; ``chat_id`` is the marked peer id.

    ``media`` names what the message carries besides text (``photo``, ``video``,
    ``document``, ``poll``, ... see :func:`actors.convert.media_kind`; ``""`` for none);
    ``views`` and ``forwards`` are Telegram's counters (0 where it keeps none).
    """

    id: int
    chat_id: int
    date: int
    text: str = ""
    sender_id: int = 0
    reply_to: int = 0
    edit_date: int = 0
    views: int = 0
    buttons: list[list[Button]] = []
    media: str = ""
    forwards: int = 0


class Dialog(Message):
    peer: Peer
    unread: int = 0
    top_message: int = 0


# -- requests and their replies (each reply is declared before its request) ----------


class Me(Message):
    user: User


class GetMe(Request[Me]):
    """Answered with :class:`Me`."""


class ResolvePeer(Request[Peer]):
    """Answered with :class:`Peer`; ``NotFound`` for an unknown username or link."""

    peer: PeerRef


class Joined(Message):
    peer: Peer


class JoinChannel(Request[Joined]):
    """Join a public channel (username/link) or an invite link; answered :class:`Joined`."""

    peer: PeerRef


class Left(Message):
    peer: Peer


class LeaveChannel(Request[Left]):
    """Answered with :class:`Left`."""

    peer: PeerRef


class History(Message):
    peer: Peer
    messages: list[ChatMessage] = []


class FetchHistory(Request[History]):
    """Messages of a chat, newest first: at most ``limit``, older than ``offset_id`` (if
    set), newer than ``min_id``. Answered with :class:`History`; one Telegram call (an
    empty page's ``peer`` then carries the id and kind only)."""

    peer: PeerRef
    limit: int = 100
    offset_id: int = 0
    min_id: int = 0


class Sent(Message):
    message: ChatMessage


class SendMessage(Request[Sent]):
    """Send text (optionally a reply, optionally with buttons); answered :class:`Sent`.

    Requires an idempotency key on the envelope: a repeat gets the first result and
    sends nothing. Without one it is answered ``BadRequest``.
    """

    peer: PeerRef
    text: str
    reply_to: int = 0
    buttons: list[list[Button]] = []


class EditMessage(Request[Sent]):
    """Replace the text (and inline keyboard) of one of the account's own messages, as a
    bot edits its menu; answered :class:`Sent` with the message as it now is.

    Editing to the text it already has is no error: the current message is the answer.
    ``NotFound`` for a message that is not there, ``Unauthorized`` for one the account
    may not edit (``MESSAGE_AUTHOR_REQUIRED``, ``CHAT_ADMIN_REQUIRED``).
    """

    peer: PeerRef
    message_id: int
    text: str
    buttons: list[list[Button]] = []


MAX_DELETE = 100  # message ids Telegram takes in one delete


class Deleted(Message):
    """How many of the asked messages Telegram deleted (those already gone are not
    counted)."""

    count: int = 0


class DeleteMessages(Request[Deleted]):
    """Delete messages of one chat; answered :class:`Deleted`.

    1..``MAX_DELETE`` positive ``message_ids``, else ``BadRequest``. ``revoke`` deletes them
    for the other side too (a private chat; a bot's deletes always are). In a channel or
    supergroup the ids are the chat's; in a private chat or basic group Telegram takes the
    ids alone (they are unique in the account's own box), the peer picks the method and
    the flood-wait scope. Ids already gone are no error (they are not counted).
    ``Unauthorized`` for messages the account may not delete (``CHAT_ADMIN_REQUIRED``,
    ``MESSAGE_DELETE_FORBIDDEN``), ``NotFound`` for an unknown peer.
    """

    peer: PeerRef
    message_ids: list[int] = []
    revoke: bool = True


class Answered(Message):
    pass


class AnswerCallback(Request[Answered]):
    """A bot answers a button press (``query_id`` from a ``CallbackQuery`` event)."""

    query_id: int
    text: str = ""
    alert: bool = False


class Dialogs(Message):
    dialogs: list[Dialog] = []


class GetDialogs(Request[Dialogs]):
    """Answered with :class:`Dialogs`."""

    limit: int = 100


# -- login -------------------------------------------------------------------------------


class CodeSent(Message):
    phone: str
    via: str = ""


class StartLogin(Request[CodeSent]):
    """Send a login code to ``phone``; answered :class:`CodeSent`."""

    phone: str


class PasswordNeeded(Message):
    hint: str = ""


class LoggedIn(Message):
    user: User


class SubmitCode(Request[LoggedIn | PasswordNeeded]):
    """The code from :class:`StartLogin`; answered :class:`LoggedIn` or
    :class:`PasswordNeeded` (two-step verification)."""

    code: str


class SubmitPassword(Request[LoggedIn]):
    """The two-step verification password; answered :class:`LoggedIn`."""

    password: str

    def __repr__(self) -> str:
        return "SubmitPassword(password='***')"


class QrLogin(Message):
    url: str
    expires_at: int


class StartQrLogin(Request[QrLogin]):
    """Begin a QR login; answered :class:`QrLogin` (show ``url`` as a QR code)."""


class QrLoginState(Message):
    state: Literal["waiting", "done", "expired", "password_needed"]
    user: User | None = None
    hint: str = ""


class QrLoginStatus(Request[QrLoginState]):
    """Answered :class:`QrLoginState`: ``waiting``, ``done`` with the user, ``expired``, or
    ``password_needed`` (with the password's ``hint``) when the account that accepted the
    code has two-step verification; then send :class:`SubmitPassword`."""


class LoggedOut(Message):
    pass


class LogOut(Request[LoggedOut]):
    """Log the account out (the session becomes unusable); answered :class:`LoggedOut`."""


class SessionExport(Message):
    session_string: str

    def __repr__(self) -> str:
        return "SessionExport(session_string='***')"


class ExportSession(Request[SessionExport]):
    """The account's session as a Telethon StringSession, only for callers allowed by
    ``accounts.<name>.export_allowed``; anyone else gets ``Unauthorized``."""


class SessionStatus(Message):
    account: str
    state: str
    authorized: bool
    user: User | None = None
    flood_waits: dict[str, float] = {}
    reconnects: int = 0
    last_update_age_s: float = -1.0
    # Why the session is in this state, when there is more to say (a refused bot token).
    reason: str = ""


class GetSessionStatus(Request[SessionStatus]):
    """Answered with :class:`SessionStatus`."""


MESSAGES: tuple[type[Message], ...] = (
    GetMe,
    Me,
    ResolvePeer,
    Peer,
    JoinChannel,
    Joined,
    LeaveChannel,
    Left,
    FetchHistory,
    History,
    SendMessage,
    Sent,
    EditMessage,
    DeleteMessages,
    Deleted,
    AnswerCallback,
    Answered,
    GetDialogs,
    Dialogs,
    StartLogin,
    CodeSent,
    SubmitCode,
    PasswordNeeded,
    SubmitPassword,
    LoggedIn,
    StartQrLogin,
    QrLogin,
    QrLoginStatus,
    QrLoginState,
    LogOut,
    LoggedOut,
    ExportSession,
    SessionExport,
    GetSessionStatus,
    SessionStatus,
)
