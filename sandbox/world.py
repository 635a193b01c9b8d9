"""The sandbox's in-memory Telegram world: accounts, channels, messages, update state.

:class:`World` implements :class:`sandbox.backend.Backend`. It owns every piece of state
the MTProto core does not: auth keys and what they are logged in as, users and bots,
broadcast channels with their members, messages and the ``pts`` counters that order them,
and the live sessions updates are pushed to.

Like real Telegram, a private chat is stored twice, once in each participant's message box,
with ids and ``pts`` counted per box; a channel has its own ids and ``pts``. ``seq`` is
always 0: the sandbox only sends ``pts``-ordered updates plus a few that need no ordering
(callback queries, login tokens), which is what real servers send as ``seq = 0`` too.

Everything runs on the event loop that runs the core; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import structlog
from telethon.extensions import BinaryReader
from telethon.tl import types
from telethon.tl.tlobject import TLObject, TLRequest

from sandbox import srp
from sandbox.backend import ClientSession, RpcError
from sandbox.botlimits import BotLimiter, ChatKind, Rate
from sandbox.faults import Faults, method_name
from sandbox.media import check_media_kind, media_view
from sandbox.methods import Call, Method, dispatch_table

log = structlog.get_logger(__name__)

#: The data center every sandbox client lives in.
DC_ID = 2
#: Where ids start; far from each other so a peer id never looks like another kind.
FIRST_USER_ID = 100_000_001
FIRST_CHANNEL_ID = 1_000_000_001
#: How long a message may wait to be written to disk (saves are coalesced).
SAVE_DELAY = 0.2
#: Coalesced saves wait at least this many times as long as the last save took, so a big
#: world (each save rewrites the whole file, on the event loop) never spends more than
#: about a tenth of the loop's time saving.
SAVE_BACKOFF = 10
#: How many channel post views (TL Message objects) are kept for reuse.
POST_VIEW_CACHE = 4096
#: How many sendMessage results are remembered for random_id deduplication.
SENT_MEMORY = 10_000
#: How many call times are kept per account and method (for Control.call_times).
CALL_TIMES_KEPT = 10_000


def now() -> int:
    """The current unix time, the unit of every date in the world."""
    return int(time.time())


def timestamp(value: datetime | int | None) -> int:
    """A TL date as unix time (0 for None); parsed requests carry datetimes."""
    if value is None:
        return 0
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def _access_hash() -> int:
    return secrets.randbits(62) + 1


class PtsEvent(msgspec.Struct, array_like=True):
    """One step of a pts sequence: what a getDifference replays from that point."""

    pts: int  # the pts after the event
    pts_count: int
    kind: str  # "new" | "edit" | "delete"
    ids: list[int]


class BoxMessage(msgspec.Struct, omit_defaults=True):
    """One message in one account's private message box."""

    id: int
    pts: int
    peer_id: int  # the other side of the private chat
    sender_id: int
    date: int
    text: str
    entities: list[bytes] = []
    reply_markup: bytes | None = None
    remote_id: int = 0  # the id of the same message in the other side's box
    reply_to_id: int | None = None  # an id in this same box
    edit_date: int | None = None


class ChannelMessage(msgspec.Struct, omit_defaults=True):
    """One post in a broadcast channel."""

    id: int
    pts: int
    date: int
    text: str
    author_id: int | None = None  # None: posted through the control API
    entities: list[bytes] = []
    reply_markup: bytes | None = None
    reply_to_id: int | None = None
    edit_date: int | None = None
    media: str | None = None  # a kind of sandbox.media.MEDIA_KINDS
    views: int | None = None
    forwards: int | None = None


class PasswordRec(msgspec.Struct):
    """An account's two-step verification password: its SRP verifier and salts, never the text."""

    salt1: bytes
    salt2: bytes
    verifier: bytes  # g^x mod p, 256 bytes (see sandbox.srp)
    hint: str = ""


class UserRec(msgspec.Struct):
    """A user or bot account and its private message box."""

    id: int
    access_hash: int
    first_name: str
    last_name: str = ""
    username: str | None = None
    phone: str | None = None
    bot: bool = False
    bot_secret: str | None = None
    password: PasswordRec | None = None
    # pts starts at 1: Telethon reads a state with pts 0 as "no state" and would
    # re-initialise on every reconnect, losing gaps.
    pts: int = 1
    qts: int = 0
    last_msg_id: int = 0
    box: list[BoxMessage] = []
    log: list[PtsEvent] = []


class ChannelRec(msgspec.Struct):
    """A broadcast channel."""

    id: int
    access_hash: int
    title: str
    date: int
    username: str | None = None
    creator_id: int | None = None
    admins: list[int] = []
    members: list[int] = []
    pts: int = 1  # as in Telegram, 0 is never a valid pts
    last_msg_id: int = 0
    messages: list[ChannelMessage] = []
    invite_hash: str = ""  # of the invite link https://t.me/+<invite_hash>
    log: list[PtsEvent] = []


class AuthKeyRec(msgspec.Struct):
    """An auth key the core created, and the account it is logged in as (if any)."""

    key_id: int
    key: bytes
    user_id: int | None = None
    created: int = 0


class WorldState(msgspec.Struct):
    """Everything that is saved to disk."""

    next_user_id: int = FIRST_USER_ID
    next_channel_id: int = FIRST_CHANNEL_ID
    users: dict[int, UserRec] = {}
    channels: dict[int, ChannelRec] = {}
    auth_keys: dict[int, AuthKeyRec] = {}


class Limits(msgspec.Struct):
    """The world's knobs, Telegram's values by default; tests lower or raise them.

    * ``difference_slice`` / ``difference_too_long``: an account's getDifference pages
      and the gap beyond which it answers differenceTooLong;
    * ``channel_difference_too_long``: the pts gap beyond which a channel's
      getChannelDifference answers channelDifferenceTooLong (the client then jumps to the
      channel's pts and replays nothing of the gap);
    * ``callback_timeout``: how long a pressed button waits for the bot's answer;
    * ``login_token_ttl``: seconds a QR login token lives;
    * ``channels_per_user``: how many channels a user may be a member of; joining one
      more answers CHANNELS_TOO_MUCH;
    * ``bot_limits``: whether bots' sends are rate limited (see :mod:`sandbox.botlimits`):
      ``bot_per_s`` / ``bot_burst`` overall per bot, ``bot_private_per_s`` /
      ``bot_private_burst`` per private chat, ``bot_channel_per_min`` /
      ``bot_channel_burst`` per channel.
    """

    difference_slice: int = 100
    difference_too_long: int = 1000
    channel_difference_too_long: int = 1000
    callback_timeout: float = 10.0
    login_token_ttl: int = 30
    channels_per_user: int = 500
    bot_limits: bool = True
    bot_per_s: float = 30.0
    bot_burst: float = 30.0
    bot_private_per_s: float = 1.0
    bot_private_burst: float = 3.0
    bot_channel_per_min: float = 20.0
    bot_channel_burst: float = 3.0

    def __post_init__(self) -> None:
        numbers = (
            self.difference_slice,
            self.difference_too_long,
            self.channel_difference_too_long,
            self.channels_per_user,
        )
        if min(numbers) < 0 or self.callback_timeout <= 0:
            raise ValueError("limits must not be negative")
        # Building the rates checks them (Rate raises ValueError).
        self.bot_overall, self.bot_private, self.bot_channel  # noqa: B018

    @property
    def bot_overall(self) -> Rate:
        """Sends per bot, whatever the chat."""
        return Rate(self.bot_per_s, self.bot_burst)

    @property
    def bot_private(self) -> Rate:
        """Sends of one bot to one private chat."""
        return Rate(self.bot_private_per_s, self.bot_private_burst)

    @property
    def bot_channel(self) -> Rate:
        """Sends of one bot to one channel (Telegram's group/channel limit)."""
        return Rate(self.bot_channel_per_min / 60, self.bot_channel_burst)


@dataclass
class LoginToken:
    """A QR login token exported by a waiting (not yet logged in) auth key."""

    token: bytes
    key_id: int
    expires: int
    user_id: int | None = None  # set when another session accepted it


@dataclass
class SrpCheck:
    """An account.getPassword challenge, waiting for its one auth.checkPassword."""

    key_id: int  # the auth key that asked for it
    user_id: int
    challenge: srp.Challenge


def _reply_header(reply_to_id: int | None) -> types.MessageReplyHeader | None:
    return types.MessageReplyHeader(reply_to_msg_id=reply_to_id) if reply_to_id else None


def _advance(rec: UserRec | ChannelRec, kind: str, ids: list[int]) -> int:
    """Log an event on an account's or channel's pts sequence; returns the new pts."""
    count = len(ids) if kind == "delete" else 1
    rec.pts += count
    rec.log.append(PtsEvent(pts=rec.pts, pts_count=count, kind=kind, ids=ids))
    return rec.pts


def events_after(log: list[PtsEvent], pts: int) -> list[PtsEvent]:
    """The events of a pts sequence after ``pts``, oldest first."""
    return log[bisect_right(log, pts, key=lambda e: e.pts) :]


def normalize_phone(phone: str) -> str:
    """Digits only, the way Telegram compares phone numbers."""
    return "".join(ch for ch in phone if ch.isdigit())


def tl_from_bytes(data: bytes) -> TLObject:
    """Parse one serialised TL object (how message entities and markups are stored)."""
    with BinaryReader(data) as reader:
        return reader.tgread_object()


class World:
    """The sandbox's world; the :class:`~sandbox.backend.Backend` the core talks to.

    Guarantees: with a ``path``, auth keys, logins, accounts and channels are written to it
    before the call that changed them returns, so a client is never told of a key a crash
    could forget; messages are written within SAVE_DELAY, or SAVE_BACKOFF times the last
    save's duration when that is longer (and by :meth:`save`, which
    :meth:`sandbox.Sandbox.stop` calls).
    """

    def __init__(self, path: Path | None = None, faults: Faults | None = None) -> None:
        self.path = path
        self.faults = faults or Faults()
        self.limits = Limits()
        self.state = WorldState()
        if path is not None and path.exists():
            self.state = msgspec.json.decode(path.read_bytes(), type=WorldState)
            log.info(
                "sandbox_world_loaded",
                path=str(path),
                accounts=len(self.state.users),
                channels=len(self.state.channels),
                auth_keys=len(self.state.auth_keys),
            )
        self.host = "127.0.0.1"
        self.port = 0
        # Live sessions per auth key, oldest first; updates go to the newest.
        self.sessions: dict[int, list[ClientSession]] = {}
        # phone -> (phone_code_hash, code)
        self.login_codes: dict[str, tuple[str, str]] = {}
        # (user_id, random_id) -> the first sendMessage result, oldest first
        self.sent: OrderedDict[tuple[int, int], TLObject] = OrderedDict()
        # auth key id -> the account whose code it gave and whose password it still needs
        self.password_logins: dict[int, int] = {}
        # srp_id -> the challenge account.getPassword issued
        self.srp_checks: dict[int, SrpCheck] = {}
        # QR login tokens by token bytes
        self.login_tokens: dict[bytes, LoginToken] = {}
        # callback query id -> the future the pressing user's call waits on
        self.callback_queries: dict[int, asyncio.Future[types.messages.BotCallbackAnswer]] = {}
        # callback query id -> the bot that must answer it
        self.callback_owners: dict[int, int] = {}
        # method name -> how many times it was invoked
        self.calls: dict[str, int] = {}
        # (account id, method name) -> unix times of its calls (refused ones too)
        self.call_times: dict[tuple[int, str], deque[float]] = {}
        self.bot_limiter = BotLimiter()
        self._dispatch: dict[type, Method] = dispatch_table()
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_save_s = 0.0
        # (channel id, message id, out) -> Message, least recently used first
        self._post_views: OrderedDict[tuple[int, int, bool], types.Message] = OrderedDict()
        self._by_username: dict[str, tuple[str, int]] = {}
        self._by_invite: dict[str, int] = {}
        self._keys_by_user: dict[int, set[int]] = {}  # account id -> its auth key ids
        self._reindex()

    # ------------------------------------------------------------------ persistence

    def _reindex(self) -> None:
        self._by_username = {}
        self._by_invite = {}
        self._keys_by_user = {}
        for key in self.state.auth_keys.values():
            if key.user_id is not None:
                self._keys_by_user.setdefault(key.user_id, set()).add(key.key_id)
        for user in self.state.users.values():
            if user.username:
                self._by_username[user.username.lower()] = ("user", user.id)
            if user.box and not user.log:  # saved before pts events were logged
                user.log = [PtsEvent(m.pts, 1, "new", [m.id]) for m in user.box]
        for channel in self.state.channels.values():
            if channel.username:
                self._by_username[channel.username.lower()] = ("channel", channel.id)
            if channel.messages and not channel.log:
                channel.log = [PtsEvent(m.pts, 1, "new", [m.id]) for m in channel.messages]
            if not channel.invite_hash:
                channel.invite_hash = secrets.token_urlsafe(12)
            self._by_invite[channel.invite_hash] = channel.id

    def save(self) -> None:
        """Write the world to ``path`` atomically now (no-op without a path).

        The file holds auth keys, so it is created with mode 0600.
        """
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self.path is None:
            return
        started = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.encode(self.state))
        os.replace(tmp, self.path)
        self._last_save_s = time.perf_counter() - started

    def save_soon(self) -> None:
        """Save within SAVE_DELAY, coalescing a burst of changes into one write.

        Messages change the world often and a save rewrites the whole file, so they use
        this; auth keys, logins and accounts are saved at once. Saves now when no event
        loop runs.
        """
        if self.path is None or self._save_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        self._save_handle = loop.call_later(
            max(SAVE_DELAY, SAVE_BACKOFF * self._last_save_s), self.save
        )

    # ------------------------------------------------------------------ Backend

    def auth_key(self, key_id: int) -> bytes | None:
        rec = self.state.auth_keys.get(key_id)
        return rec.key if rec else None

    def add_auth_key(self, key_id: int, key: bytes) -> None:
        self.state.auth_keys[key_id] = AuthKeyRec(key_id=key_id, key=key, created=now())
        self.save()

    def session_started(self, session: ClientSession) -> None:
        self.sessions.setdefault(session.auth_key_id, []).append(session)

    def session_ended(self, session: ClientSession) -> None:
        live = self.sessions.get(session.auth_key_id, [])
        if session in live:
            live.remove(session)
        if not live:
            self.sessions.pop(session.auth_key_id, None)

    async def invoke(self, session: ClientSession, query: TLRequest) -> TLObject:
        """Run one query through faults and its handler.

        Raises RpcError (a Telegram error, including ``METHOD_NOT_IMPLEMENTED`` for methods
        the sandbox lacks and 401 ``AUTH_KEY_UNREGISTERED`` before login) and
        DropConnection (injected faults).
        """
        name = method_name(type(query))
        self.calls[name] = self.calls.get(name, 0) + 1
        key = self.state.auth_keys.get(session.auth_key_id)
        if key is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        user = self.state.users.get(key.user_id) if key.user_id is not None else None
        if user is not None:
            times = self.call_times.get((user.id, name))
            if times is None:
                times = self.call_times[(user.id, name)] = deque(maxlen=CALL_TIMES_KEPT)
            times.append(time.time())
        await self.faults.before(name, user.id if user else None)
        method = self._dispatch.get(type(query))
        if method is None:
            raise RpcError(400, "METHOD_NOT_IMPLEMENTED")
        result = await method.run(Call(self, session, key, user), query)
        self.faults.after(name, user.id if user else None)
        return result

    # ------------------------------------------------------------------ sessions & pushes

    def live_session(self, key_id: int) -> ClientSession | None:
        """The newest session of an auth key that receives updates, if one is connected."""
        for session in reversed(self.sessions.get(key_id, [])):
            if session.receives_updates:
                return session
        return None

    def keys_of(self, user_id: int) -> list[int]:
        """The ids of every auth key logged in as this account."""
        return sorted(self._keys_by_user.get(user_id, ()))

    def push_to_key(self, key_id: int, updates: TLObject) -> bool:
        """Push to the newest live session of one auth key; False if none is connected.

        A stalled account's pushes are lost on the way (False), as on a silent connection.
        """
        key = self.state.auth_keys.get(key_id)
        if key is not None and self.faults.stalled(key.user_id):
            return False
        session = self.live_session(key_id)
        if session is None:
            return False
        session.push(updates)
        return True

    def push_to_user(self, user_id: int, updates: TLObject, *, skip_key: int | None = None) -> bool:
        """Push to every auth key logged in as ``user_id`` (except ``skip_key``).

        True when at least one connected session got it.
        """
        delivered = False
        for key_id in self.keys_of(user_id):
            if key_id != skip_key and self.push_to_key(key_id, updates):
                delivered = True
        return delivered

    def forget_auth_key(self, key_id: int) -> None:
        """Drop an auth key as if the server lost it: the core answers -404 from now on.

        A short key's StringSession alias (the key padded with zeros to 256 bytes, which
        the core registers too) goes with it.
        """
        rec = self.state.auth_keys.pop(key_id, None)
        log.info("sandbox_auth_key_forgotten", auth_key_id=key_id)
        if rec is not None and rec.user_id is not None:
            self._keys_by_user.get(rec.user_id, set()).discard(key_id)
        if rec is not None and len(rec.key) < 256:
            alias = rec.key.ljust(256, b"\x00")
            for other in [k for k in self.state.auth_keys.values() if k.key == alias]:
                del self.state.auth_keys[other.key_id]
        for session in self.sessions.pop(key_id, []):
            session.close()
        self.save()

    # ------------------------------------------------------------------ lookups

    def user(self, user_id: int) -> UserRec:
        """The account with this id; raises RpcError 400 USER_ID_INVALID."""
        user = self.state.users.get(user_id)
        if user is None:
            raise RpcError(400, "USER_ID_INVALID")
        return user

    def channel(self, channel_id: int) -> ChannelRec:
        """The channel with this id; raises RpcError 400 CHANNEL_INVALID."""
        channel = self.state.channels.get(channel_id)
        if channel is None:
            raise RpcError(400, "CHANNEL_INVALID")
        return channel

    def by_username(self, username: str) -> tuple[str, int] | None:
        """``("user" | "channel", id)`` for a public username (case-insensitive)."""
        return self._by_username.get(username.lstrip("@").lower())

    def by_invite(self, invite_hash: str) -> ChannelRec:
        """The channel an invite link hash opens; raises RpcError 400 INVITE_HASH_INVALID."""
        channel_id = self._by_invite.get(invite_hash)
        if channel_id is None:
            raise RpcError(400, "INVITE_HASH_INVALID")
        return self.state.channels[channel_id]

    def user_by_phone(self, phone: str) -> UserRec | None:
        """The account registered with this phone number, if any."""
        digits = normalize_phone(phone)
        for user in self.state.users.values():
            if user.phone == digits:
                return user
        return None

    def _claim_username(self, username: str | None, kind: str, peer_id: int) -> None:
        if not username:
            return
        if self.by_username(username) is not None:
            raise RpcError(400, "USERNAME_OCCUPIED")
        self._by_username[username.lower()] = (kind, peer_id)

    # ------------------------------------------------------------------ accounts

    def create_user(
        self,
        phone: str,
        first_name: str,
        last_name: str = "",
        username: str | None = None,
    ) -> UserRec:
        """Register a user account. Raises RpcError PHONE_NUMBER_OCCUPIED / USERNAME_OCCUPIED."""
        digits = normalize_phone(phone)
        if not digits:
            raise RpcError(400, "PHONE_NUMBER_INVALID")
        if self.user_by_phone(digits) is not None:
            raise RpcError(400, "PHONE_NUMBER_OCCUPIED")
        user_id = self._next_user_id()
        self._claim_username(username, "user", user_id)
        user = UserRec(
            id=user_id,
            access_hash=_access_hash(),
            first_name=first_name,
            last_name=last_name,
            username=username,
            phone=digits,
        )
        self.state.users[user.id] = user
        self.save()
        return user

    def create_bot(self, username: str, first_name: str) -> tuple[UserRec, str]:
        """Create a bot account; returns it and its token ``"<bot_id>:<secret>"``."""
        if not username.lower().endswith("bot"):
            raise RpcError(400, "BOT_USERNAME_INVALID")
        user_id = self._next_user_id()
        self._claim_username(username, "user", user_id)
        bot = UserRec(
            id=user_id,
            access_hash=_access_hash(),
            first_name=first_name,
            username=username,
            bot=True,
            bot_secret=secrets.token_urlsafe(24),
        )
        self.state.users[bot.id] = bot
        self.save()
        return bot, f"{bot.id}:{bot.bot_secret}"

    def bot_by_token(self, token: str) -> UserRec:
        """The bot a token belongs to; raises RpcError 400 ACCESS_TOKEN_INVALID."""
        bot_id, _, secret = token.partition(":")
        user = self.state.users.get(int(bot_id)) if bot_id.isdigit() else None
        if (
            user is None
            or not user.bot
            or not secrets.compare_digest(user.bot_secret or "", secret)
        ):
            raise RpcError(400, "ACCESS_TOKEN_INVALID")
        return user

    def set_password(self, user: UserRec, password: str, hint: str = "") -> None:
        """Give the account a two-step verification password (replacing any); saved at once.

        Only the SRP verifier and fresh salts are kept. Challenges issued for the old
        password fail from now on.
        """
        salt1, salt2 = secrets.token_bytes(40), secrets.token_bytes(16)
        user.password = PasswordRec(
            salt1=salt1, salt2=salt2, verifier=srp.verifier(password, salt1, salt2), hint=hint
        )
        self.save()

    def _next_user_id(self) -> int:
        user_id = self.state.next_user_id
        self.state.next_user_id += 1
        return user_id

    def bind(self, key: AuthKeyRec, user: UserRec | None) -> None:
        """Log an auth key in as ``user`` (or out, with None); saved at once."""
        if key.user_id is not None:
            self._keys_by_user.get(key.user_id, set()).discard(key.key_id)
        key.user_id = user.id if user else None
        if user is not None:
            self._keys_by_user.setdefault(user.id, set()).add(key.key_id)
        self.save()

    # ------------------------------------------------------------------ channels

    def create_channel(
        self, title: str, username: str | None = None, creator_id: int | None = None
    ) -> ChannelRec:
        """Create a broadcast channel; its creator (if any) is a member and an admin."""
        channel_id = self.state.next_channel_id
        self._claim_username(username, "channel", channel_id)
        self.state.next_channel_id += 1
        members = [creator_id] if creator_id is not None else []
        channel = ChannelRec(
            id=channel_id,
            access_hash=_access_hash(),
            title=title,
            date=now(),
            username=username,
            creator_id=creator_id,
            admins=list(members),
            members=list(members),
            invite_hash=secrets.token_urlsafe(12),
        )
        self._by_invite[channel.invite_hash] = channel.id
        self.state.channels[channel.id] = channel
        self.save()
        return channel

    def add_member(self, channel: ChannelRec, user_id: int, admin: bool = False) -> None:
        """Make ``user_id`` a member (and optionally an admin) of the channel."""
        self.user(user_id)
        if user_id not in channel.members:
            channel.members.append(user_id)
        if admin and user_id not in channel.admins:
            channel.admins.append(user_id)
        self.save()

    def remove_member(self, channel: ChannelRec, user_id: int) -> None:
        """Remove a member; raises RpcError 400 USER_NOT_PARTICIPANT."""
        if user_id not in channel.members:
            raise RpcError(400, "USER_NOT_PARTICIPANT")
        channel.members.remove(user_id)
        if user_id in channel.admins:
            channel.admins.remove(user_id)
        self.save()

    def can_read(self, channel: ChannelRec, user_id: int) -> bool:
        """Public channels can be read by anyone; private ones only by members."""
        return channel.username is not None or user_id in channel.members

    def post(
        self,
        channel: ChannelRec,
        text: str,
        *,
        author_id: int | None = None,
        entities: Iterable[TLObject] = (),
        reply_markup: TLObject | None = None,
        reply_to_id: int | None = None,
        skip_key: int | None = None,
        media: str | None = None,
        views: int | None = None,
        forwards: int | None = None,
    ) -> ChannelMessage:
        """Publish a post and push it to every member as UpdateNewChannelMessage.

        ``media`` is a kind of :data:`sandbox.media.MEDIA_KINDS`; ``views`` and
        ``forwards`` the counters the post shows. Raises RpcError 403
        CHAT_ADMIN_REQUIRED when ``author_id`` is not an admin, ValueError for an unknown
        media kind.
        """
        if author_id is not None and author_id not in channel.admins:
            raise RpcError(403, "CHAT_ADMIN_REQUIRED")
        check_media_kind(media)
        channel.last_msg_id += 1
        msg = ChannelMessage(
            id=channel.last_msg_id,
            pts=_advance(channel, "new", [channel.last_msg_id]),
            date=now(),
            text=text,
            author_id=author_id,
            entities=[bytes(e) for e in entities],
            reply_markup=bytes(reply_markup) if reply_markup is not None else None,
            reply_to_id=reply_to_id if self.channel_message(channel, reply_to_id or 0) else None,
            media=media,
            views=views,
            forwards=forwards,
        )
        channel.messages.append(msg)
        self.save_soon()
        self._push_to_members(
            channel,
            lambda viewer_id: types.UpdateNewChannelMessage(
                message=self.channel_message_view(channel, msg, viewer_id), pts=msg.pts, pts_count=1
            ),
            msg.date,
            skip_key,
        )
        return msg

    def edit_post(
        self,
        channel: ChannelRec,
        msg_id: int,
        text: str,
        *,
        editor_id: int | None = None,
        entities: Iterable[TLObject] = (),
        reply_markup: TLObject | None = None,
        skip_key: int | None = None,
    ) -> ChannelMessage:
        """Change a post's text and push UpdateEditChannelMessage to every member.

        Raises RpcError MESSAGE_ID_INVALID / CHAT_ADMIN_REQUIRED / MESSAGE_NOT_MODIFIED.
        """
        if editor_id is not None and editor_id not in channel.admins:
            raise RpcError(403, "CHAT_ADMIN_REQUIRED")
        msg = self.channel_message(channel, msg_id)
        if msg is None:
            raise RpcError(400, "MESSAGE_ID_INVALID")
        raw_entities = [bytes(e) for e in entities]
        markup = bytes(reply_markup) if reply_markup is not None else msg.reply_markup
        if (msg.text, msg.entities, msg.reply_markup) == (text, raw_entities, markup):
            raise RpcError(400, "MESSAGE_NOT_MODIFIED")
        msg.text, msg.entities, msg.reply_markup = text, raw_entities, markup
        msg.edit_date = now()
        for out in (False, True):
            self._post_views.pop((channel.id, msg.id, out), None)
        pts = _advance(channel, "edit", [msg.id])
        self.save_soon()
        self._push_to_members(
            channel,
            lambda viewer_id: types.UpdateEditChannelMessage(
                message=self.channel_message_view(channel, msg, viewer_id), pts=pts, pts_count=1
            ),
            msg.edit_date,
            skip_key,
        )
        return msg

    def delete_posts(
        self,
        channel: ChannelRec,
        ids: Iterable[int],
        *,
        deleter_id: int | None = None,
        skip_key: int | None = None,
    ) -> tuple[int, int]:
        """Delete posts (unknown ids are ignored); push UpdateDeleteChannelMessages.

        Returns ``(pts, pts_count)``; pts_count is 0 when nothing was deleted. Raises
        RpcError CHAT_ADMIN_REQUIRED.
        """
        if deleter_id is not None and deleter_id not in channel.admins:
            raise RpcError(403, "CHAT_ADMIN_REQUIRED")
        doomed = sorted({i for i in ids if self.channel_message(channel, i) is not None})
        if not doomed:
            return channel.pts, 0
        channel.messages = [m for m in channel.messages if m.id not in doomed]
        for msg_id in doomed:
            for out in (False, True):
                self._post_views.pop((channel.id, msg_id, out), None)
        pts = _advance(channel, "delete", doomed)
        self.save_soon()
        update = types.UpdateDeleteChannelMessages(
            channel_id=channel.id, messages=doomed, pts=pts, pts_count=len(doomed)
        )
        self._push_to_members(channel, lambda _viewer_id: update, now(), skip_key)
        return pts, len(doomed)

    def _push_to_members(
        self,
        channel: ChannelRec,
        update_for: Callable[[int], TLObject],
        date: int,
        skip_key: int | None,
    ) -> None:
        """Push ``update_for(member)`` to every connected member (except ``skip_key``).

        Nothing is pushed while the channel's updates are withheld, and pushes are held
        back while they are delayed (faults). Members with no live session are skipped
        without building their update, which keeps a busy channel with offline members
        cheap.
        """
        if self.faults.withheld(channel.id):
            return
        delay = self.faults.update_delay(channel.id)
        for member_id in channel.members:
            if not any(
                key_id != skip_key and self.live_session(key_id) is not None
                for key_id in self._keys_by_user.get(member_id, ())
            ):
                continue
            updates = self.updates_for(member_id, [update_for(member_id)], date)
            if delay > 0:
                asyncio.get_running_loop().call_later(
                    delay,
                    functools.partial(self.push_to_user, skip_key=skip_key),
                    member_id,
                    updates,
                )
            else:
                self.push_to_user(member_id, updates, skip_key=skip_key)

    def channel_count(self, user_id: int) -> int:
        """How many channels the account is a member of."""
        return sum(1 for c in self.state.channels.values() if user_id in c.members)

    def check_channel_cap(self, user: UserRec) -> None:
        """Raise RpcError 400 CHANNELS_TOO_MUCH when ``user`` may join no more channels."""
        if self.channel_count(user.id) >= self.limits.channels_per_user:
            raise RpcError(400, "CHANNELS_TOO_MUCH")

    def admit_bot_send(self, bot: UserRec, chat_id: int, kind: ChatKind) -> None:
        """Apply the bot sending limits to one send of ``bot`` to ``chat_id``.

        No-op for users; with ``limits.bot_limits`` off the send is only logged (an
        injected ``chat_flood`` still refuses it). Raises RpcError 420 ``FLOOD_WAIT_<X>``
        (see :mod:`sandbox.botlimits`).
        """
        if not bot.bot:
            return
        limits = self.limits
        rates = None
        if limits.bot_limits:
            per_chat = limits.bot_private if kind == "private" else limits.bot_channel
            rates = (limits.bot_overall, per_chat)
        forced = self.faults.chat_flood_left(bot.id, chat_id)
        self.bot_limiter.admit(bot.id, chat_id, kind, rates, forced)

    def remember_sent(self, key: tuple[int, int], result: TLObject) -> None:
        """Keep a sendMessage result for deduplication (the oldest beyond SENT_MEMORY go)."""
        self.sent[key] = result
        while len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)

    # ------------------------------------------------------------------ private messages

    def send_private(
        self,
        sender: UserRec,
        target: UserRec,
        text: str,
        *,
        entities: Iterable[TLObject] = (),
        reply_markup: TLObject | None = None,
        reply_to_id: int | None = None,
        skip_key: int | None = None,
    ) -> BoxMessage:
        """Deliver a private message to both boxes and push it to the target.

        Returns the sender's copy. The target gets UpdateNewMessage with its own id and
        pts; the sender's other auth keys (not ``skip_key``) get the outgoing copy.
        ``reply_to_id`` (an id in the sender's box) becomes the matching id in each box.
        """
        date = now()
        raw_entities = [bytes(e) for e in entities]
        markup = bytes(reply_markup) if reply_markup is not None else None
        replied = self.box_message(sender, reply_to_id) if reply_to_id else None
        out = self._store(sender, target.id, sender.id, date, text, raw_entities, markup)
        out.reply_to_id = replied.id if replied else None
        if target.id != sender.id:
            inbox = self._store(target, sender.id, sender.id, date, text, raw_entities, markup)
            out.remote_id, inbox.remote_id = inbox.id, out.id
            inbox.reply_to_id = replied.remote_id if replied and replied.remote_id else None
            update = types.UpdateNewMessage(
                message=self.box_message_view(target, inbox), pts=inbox.pts, pts_count=1
            )
            self.push_to_user(target.id, self.updates_for(target.id, [update], date))
        self.save_soon()
        own = types.UpdateNewMessage(
            message=self.box_message_view(sender, out), pts=out.pts, pts_count=1
        )
        self.push_to_user(sender.id, self.updates_for(sender.id, [own], date), skip_key=skip_key)
        return out

    def edit_private(
        self,
        editor: UserRec,
        msg_id: int,
        text: str,
        *,
        entities: Iterable[TLObject] = (),
        reply_markup: TLObject | None = None,
        skip_key: int | None = None,
    ) -> BoxMessage:
        """Edit a private message the editor sent (``msg_id`` in the editor's box).

        Both copies change; each side gets UpdateEditMessage with its own pts. Returns
        the editor's copy. Raises RpcError MESSAGE_ID_INVALID / MESSAGE_AUTHOR_REQUIRED /
        MESSAGE_NOT_MODIFIED.
        """
        own = self.box_message(editor, msg_id)
        if own is None:
            raise RpcError(400, "MESSAGE_ID_INVALID")
        if own.sender_id != editor.id:
            raise RpcError(403, "MESSAGE_AUTHOR_REQUIRED")
        raw_entities = [bytes(e) for e in entities]
        markup = bytes(reply_markup) if reply_markup is not None else own.reply_markup
        if (own.text, own.entities, own.reply_markup) == (text, raw_entities, markup):
            raise RpcError(400, "MESSAGE_NOT_MODIFIED")
        date = now()
        other = self.state.users.get(own.peer_id)
        copies = [(editor, own)]
        if other is not None and other.id != editor.id:
            theirs = self.box_message(other, own.remote_id)
            if theirs is not None:
                copies.append((other, theirs))
        for owner, msg in copies:
            msg.text, msg.entities, msg.reply_markup, msg.edit_date = (
                text,
                raw_entities,
                markup,
                date,
            )
            update = types.UpdateEditMessage(
                message=self.box_message_view(owner, msg),
                pts=_advance(owner, "edit", [msg.id]),
                pts_count=1,
            )
            self.push_to_user(
                owner.id,
                self.updates_for(owner.id, [update], date),
                skip_key=skip_key if owner is editor else None,
            )
        self.save_soon()
        return own

    def delete_private(
        self, owner: UserRec, ids: Iterable[int], *, revoke: bool, skip_key: int | None = None
    ) -> tuple[int, int]:
        """Delete messages from ``owner``'s box (and, with ``revoke``, the other copies).

        Each affected box gets UpdateDeleteMessages with its own pts. Unknown ids are
        ignored. Returns ``(pts, pts_count)`` of ``owner``'s box.
        """
        doomed = [m for m in (self.box_message(owner, i) for i in set(ids)) if m is not None]
        if not doomed:
            return owner.pts, 0
        by_box: dict[int, list[int]] = {owner.id: [m.id for m in doomed]}
        if revoke:
            for msg in doomed:
                other = self.state.users.get(msg.peer_id)
                if other is not None and other.id != owner.id and msg.remote_id:
                    by_box.setdefault(other.id, []).append(msg.remote_id)
        result = (owner.pts, 0)
        for user_id, msg_ids in by_box.items():
            user = self.state.users[user_id]
            gone = sorted(set(msg_ids))
            user.box = [m for m in user.box if m.id not in gone]
            pts = _advance(user, "delete", gone)
            if user is owner:
                result = (pts, len(gone))
            update = types.UpdateDeleteMessages(messages=gone, pts=pts, pts_count=len(gone))
            self.push_to_user(
                user_id,
                self.updates_for(user_id, [update], now()),
                skip_key=skip_key if user is owner else None,
            )
        self.save_soon()
        return result

    def _store(
        self,
        owner: UserRec,
        peer_id: int,
        sender_id: int,
        date: int,
        text: str,
        entities: list[bytes],
        markup: bytes | None,
    ) -> BoxMessage:
        owner.last_msg_id += 1
        msg = BoxMessage(
            id=owner.last_msg_id,
            pts=_advance(owner, "new", [owner.last_msg_id]),
            peer_id=peer_id,
            sender_id=sender_id,
            date=date,
            text=text,
            entities=entities,
            reply_markup=markup,
        )
        owner.box.append(msg)
        return msg

    async def press_button(
        self, user: UserRec, bot: UserRec, msg_id: int, data: bytes
    ) -> types.messages.BotCallbackAnswer:
        """``user`` presses an inline button of message ``msg_id`` (an id in its own box).

        The bot gets updateBotCallbackQuery; its messages.setBotCallbackAnswer is returned.
        Raises RpcError MESSAGE_ID_INVALID (no such message from that bot in the chat) /
        BOT_RESPONSE_TIMEOUT (no answer within ``limits.callback_timeout``).
        """
        msg = self.box_message(user, msg_id)
        if not bot.bot or msg is None or msg.peer_id != bot.id or msg.sender_id != bot.id:
            raise RpcError(400, "MESSAGE_ID_INVALID")
        query_id = secrets.randbits(63)
        answer: asyncio.Future[types.messages.BotCallbackAnswer] = (
            asyncio.get_running_loop().create_future()
        )
        self.callback_queries[query_id] = answer
        self.callback_owners[query_id] = bot.id
        update = types.UpdateBotCallbackQuery(
            query_id=query_id,
            user_id=user.id,
            peer=types.PeerUser(user.id),
            msg_id=msg.remote_id,
            chat_instance=user.id ^ bot.id,
            data=data,
        )
        self.push_to_user(
            bot.id,
            types.Updates(
                updates=[update],
                users=self.users_view([user.id, bot.id], bot.id),
                chats=[],
                date=now(),
                seq=0,
            ),
        )
        try:
            return await asyncio.wait_for(answer, self.limits.callback_timeout)
        except TimeoutError:
            raise RpcError(400, "BOT_RESPONSE_TIMEOUT") from None
        finally:
            self.callback_queries.pop(query_id, None)
            self.callback_owners.pop(query_id, None)

    def box_message(self, owner: UserRec, msg_id: int) -> BoxMessage | None:
        """A message of ``owner``'s box by id (ids are ascending, so bisect)."""
        i = bisect_right(owner.box, msg_id, key=lambda m: m.id) - 1
        if i >= 0 and owner.box[i].id == msg_id:
            return owner.box[i]
        return None

    def channel_message(self, channel: ChannelRec, msg_id: int) -> ChannelMessage | None:
        """A channel post by id."""
        i = bisect_right(channel.messages, msg_id, key=lambda m: m.id) - 1
        if i >= 0 and channel.messages[i].id == msg_id:
            return channel.messages[i]
        return None

    def chat_messages(self, owner: UserRec, peer_id: int) -> list[BoxMessage]:
        """The messages of one private chat in ``owner``'s box, oldest first."""
        return [m for m in owner.box if m.peer_id == peer_id]

    # ------------------------------------------------------------------ TL views

    def user_view(self, user: UserRec, viewer_id: int | None) -> types.User:
        """The User object as ``viewer_id`` sees it (phone only for oneself)."""
        is_self = user.id == viewer_id
        return types.User(
            id=user.id,
            is_self=is_self,
            bot=user.bot,
            access_hash=user.access_hash,
            first_name=user.first_name,
            last_name=user.last_name or None,
            username=user.username,
            phone=user.phone if is_self else None,
            status=None if user.bot else types.UserStatusRecently(),
            bot_info_version=1 if user.bot else None,
            bot_nochats=None,
        )

    def channel_view(self, channel: ChannelRec, viewer_id: int | None) -> types.Channel:
        """The Channel object as ``viewer_id`` sees it (left / creator / admin rights)."""
        admin = viewer_id in channel.admins
        return types.Channel(
            id=channel.id,
            title=channel.title,
            photo=types.ChatPhotoEmpty(),
            date=channel.date,
            creator=viewer_id is not None and viewer_id == channel.creator_id,
            left=viewer_id not in channel.members,
            broadcast=True,
            access_hash=channel.access_hash,
            username=channel.username,
            participants_count=len(channel.members),
            admin_rights=types.ChatAdminRights(post_messages=True, edit_messages=True)
            if admin
            else None,
        )

    def channel_message_view(
        self, channel: ChannelRec, msg: ChannelMessage, viewer_id: int | None
    ) -> types.Message:
        """A channel post as a Message (shared between calls: posts never change)."""
        out = msg.author_id is not None and msg.author_id == viewer_id
        key = (channel.id, msg.id, out)
        view = self._post_views.get(key)
        if view is None:
            # Building a Message is the costliest part of a history page; readers ask for
            # the same recent posts over and over.
            view = types.Message(
                id=msg.id,
                peer_id=types.PeerChannel(channel.id),
                date=msg.date,
                message=msg.text,
                out=out,
                post=True,
                entities=[tl_from_bytes(e) for e in msg.entities] or None,
                reply_markup=tl_from_bytes(msg.reply_markup) if msg.reply_markup else None,
                reply_to=_reply_header(msg.reply_to_id),
                edit_date=msg.edit_date,
                media=media_view(msg.media, channel.id << 24 | msg.id, msg.date, DC_ID)
                if msg.media
                else None,
                views=msg.views,
                forwards=msg.forwards,
            )
            self._post_views[key] = view
            if len(self._post_views) > POST_VIEW_CACHE:
                self._post_views.popitem(last=False)
        else:
            self._post_views.move_to_end(key)
        return view

    def box_message_view(self, owner: UserRec, msg: BoxMessage) -> types.Message:
        """A private message as its box owner sees it."""
        return types.Message(
            id=msg.id,
            peer_id=types.PeerUser(msg.peer_id),
            date=msg.date,
            message=msg.text,
            out=msg.sender_id == owner.id,
            from_id=types.PeerUser(msg.sender_id),
            entities=[tl_from_bytes(e) for e in msg.entities] or None,
            reply_markup=tl_from_bytes(msg.reply_markup) if msg.reply_markup else None,
            reply_to=_reply_header(msg.reply_to_id),
            edit_date=msg.edit_date,
        )

    def users_view(self, ids: Iterable[int | None], viewer_id: int | None) -> list[types.User]:
        """User objects for the given ids (unknown ids and None skipped, no duplicates)."""
        seen: dict[int, types.User] = {}
        for user_id in ids:
            if user_id is None or user_id in seen:
                continue
            user = self.state.users.get(user_id)
            if user is not None:
                seen[user_id] = self.user_view(user, viewer_id)
        return list(seen.values())

    def peers_of(self, messages: Iterable[TLObject]) -> tuple[set[int], set[int]]:
        """The user ids and channel ids a list of Message objects mentions."""
        users: set[int] = set()
        channels: set[int] = set()
        for m in messages:
            for peer in (getattr(m, "peer_id", None), getattr(m, "from_id", None)):
                if isinstance(peer, types.PeerUser):
                    users.add(peer.user_id)
                elif isinstance(peer, types.PeerChannel):
                    channels.add(peer.channel_id)
        return users, channels

    def entities_for(
        self, messages: list[TLObject], viewer_id: int, extra_users: Iterable[int] = ()
    ) -> tuple[list[types.User], list[types.Channel]]:
        """The users and chats a client needs to make sense of ``messages``."""
        user_ids, channel_ids = self.peers_of(messages)
        user_ids.update(extra_users)
        users = self.users_view(sorted(user_ids), viewer_id)
        chats = [
            self.channel_view(self.state.channels[c], viewer_id)
            for c in sorted(channel_ids)
            if c in self.state.channels
        ]
        return users, chats

    def updates_for(self, viewer_id: int, updates: list[TLObject], date: int) -> types.Updates:
        """A full Updates with every user and chat the updates mention (seq 0)."""
        messages = [u.message for u in updates if hasattr(u, "message")]
        users, chats = self.entities_for(messages, viewer_id, extra_users=[viewer_id])
        return types.Updates(updates=updates, users=users, chats=chats, date=date, seq=0)

    def state_view(self, user: UserRec) -> types.updates.State:
        """The account's update state."""
        return types.updates.State(pts=user.pts, qts=user.qts, date=now(), seq=0, unread_count=0)
