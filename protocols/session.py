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

from protocols.base import Message

PeerRef = str | int


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
    """One message as Switchboard sees it; ``chat_id`` is the marked peer id."""

    id: int
    chat_id: int
    date: int
    text: str = ""
    sender_id: int = 0
    reply_to: int = 0
    edit_date: int = 0
    views: int = 0
    buttons: list[list[Button]] = []


class Dialog(Message):
    peer: Peer
    unread: int = 0
    top_message: int = 0


# -- requests and their replies -------------------------------------------------------


class GetMe(Message):
    """Answered with :class:`Me`."""


class Me(Message):
    user: User


class ResolvePeer(Message):
    """Answered with :class:`Peer`; ``NotFound`` for an unknown username or link."""

    peer: PeerRef


class JoinChannel(Message):
    """Join a public channel (username/link) or an invite link; answered :class:`Joined`."""

    peer: PeerRef


class Joined(Message):
    peer: Peer


class LeaveChannel(Message):
    """Answered with :class:`Left`."""

    peer: PeerRef


class Left(Message):
    peer: Peer


class FetchHistory(Message):
    """Messages of a chat, newest first: at most ``limit``, older than ``offset_id`` (if
    set), newer than ``min_id``. Answered with :class:`History`."""

    peer: PeerRef
    limit: int = 100
    offset_id: int = 0
    min_id: int = 0


class History(Message):
    peer: Peer
    messages: list[ChatMessage] = []


class SendMessage(Message):
    """Send text (optionally a reply, optionally with buttons); answered :class:`Sent`.

    Requires an idempotency key on the envelope: a repeat gets the first result and
    sends nothing. Without one it is answered ``BadRequest``.
    """

    peer: PeerRef
    text: str
    reply_to: int = 0
    buttons: list[list[Button]] = []


class Sent(Message):
    message: ChatMessage


class AnswerCallback(Message):
    """A bot answers a button press (``query_id`` from a ``CallbackQuery`` event)."""

    query_id: int
    text: str = ""
    alert: bool = False


class Answered(Message):
    pass


class GetDialogs(Message):
    """Answered with :class:`Dialogs`."""

    limit: int = 100


class Dialogs(Message):
    dialogs: list[Dialog] = []


# -- login -------------------------------------------------------------------------------


class StartLogin(Message):
    """Send a login code to ``phone``; answered :class:`CodeSent`."""

    phone: str


class CodeSent(Message):
    phone: str
    via: str = ""


class SubmitCode(Message):
    """The code from :class:`StartLogin`; answered :class:`LoggedIn` or
    :class:`PasswordNeeded` (two-step verification)."""

    code: str


class PasswordNeeded(Message):
    hint: str = ""


class SubmitPassword(Message):
    """The two-step verification password; answered :class:`LoggedIn`."""

    password: str

    def __repr__(self) -> str:
        return "SubmitPassword(password='***')"


class LoggedIn(Message):
    user: User


class StartQrLogin(Message):
    """Begin a QR login; answered :class:`QrLogin` (show ``url`` as a QR code)."""


class QrLogin(Message):
    url: str
    expires_at: int


class QrLoginStatus(Message):
    """Answered :class:`QrLoginState` (``waiting``, ``done`` with the user, ``expired``)."""


class QrLoginState(Message):
    state: Literal["waiting", "done", "expired"]
    user: User | None = None


class LogOut(Message):
    """Log the account out (the session becomes unusable); answered :class:`LoggedOut`."""


class LoggedOut(Message):
    pass


class ExportSession(Message):
    """The account's session as a Telethon StringSession, only for callers allowed by
    ``accounts.<name>.export_allowed``; anyone else gets ``Unauthorized``."""


class SessionExport(Message):
    session_string: str

    def __repr__(self) -> str:
        return "SessionExport(session_string='***')"


class GetSessionStatus(Message):
    """Answered with :class:`SessionStatus`."""


class SessionStatus(Message):
    account: str
    state: str
    authorized: bool
    user: User | None = None
    flood_waits: dict[str, float] = {}
    reconnects: int = 0
    last_update_age_s: float = -1.0


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
