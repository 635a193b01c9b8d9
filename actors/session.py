"""The session actor: the only code that touches one Telegram account.

``session:<account>`` owns one Telethon ``TelegramClient`` and its session storage for
the actor's whole life. Guarantees:

* **Single owner.** The broker grants the address to one node; on top of that, a session
  file is held under an OS lock (:class:`runtime.locks.SessionFileLock`) from start to
  stop, so a second owner on the same host fails at once, naming the holder's pid.
* **Serialized access.** Every Telegram call and every touch of the session storage run on
  the process's one asyncio loop thread, so nothing ever writes the session concurrently.
  Calls with side effects (send, join, leave, answer, log in or out) pass one at a time,
  in arrival order, through a FIFO gate; reads are pipelined over the one connection.
* **Flood control.** Proactive token buckets per method class, and FloodWait recorded per
  method: a request of a flood-waited method waits if its deadline allows, else it is
  answered ``FloodWait(retry_after)`` at once. A wait never blocks other methods — it is
  spent outside the gate.
* **Watchdog.** With no update for ``watchdog_interval_s`` a cheap request checks the
  connection; a silent or dropped connection is reconnected with capped exponential
  backoff, forever, every change published as a ``SessionState`` event. After every
  (re)connect, missed updates are caught up explicitly.
* **Nothing lost, nothing twice.** Update state and entities are saved to the session as
  they advance (every ``state_save_interval_s`` while changing), so a restart resumes from
  where it stopped; Telethon's update state deduplicates what is caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import telethon.crypto.rsa
from telethon import Button as TgButton
from telethon import TelegramClient, events, utils
from telethon import errors as tg_errors
from telethon.errors import AuthKeyNotFound
from telethon.sessions import SQLiteSession, StringSession
from telethon.sessions.abstract import Session
from telethon.tl import functions, types

from actors import convert
from actors.flood import BOT_LIMITS, USER_LIMITS, FloodControl, FloodWaitError, RateLimit
from config import AccountSettings, SessionSettings
from config.keys import rsa_public_key_pem
from protocols import errors
from protocols import session as s
from protocols.base import Message
from protocols.envelope import Envelope
from protocols.events import (
    BotCommand,
    CallbackQuery,
    DeletedPost,
    EditedPost,
    NewMessage,
    NewPost,
    SessionState,
    SessionStateName,
    bot_topic,
    message_topic,
    post_topic,
    session_topic,
)
from runtime.actor import Actor, ActorContext
from runtime.handlers import handles
from runtime.locks import SessionFileLock
from runtime.loop import get_loop_thread

T = TypeVar("T")

# The sandbox and Telegram both accept any application for a custom server.
_ANY_API_ID = 1
_ANY_API_HASH = "switchboard"
_MAX_TEXT = 4096
_MAX_HISTORY = 1000
_DEFAULT_DEADLINE_S = 30.0
# Telegram also answers -404 for a while when it is in trouble: only this many in a row
# count as a revoked auth key.
_UNKNOWN_KEY_LIMIT = 3


def session_address(account: str) -> str:
    """The address of an account's session actor."""
    return f"session:{account}"


def session_path(account: str, settings: AccountSettings, data_dir: str | os.PathLike[str]) -> Path:
    """Where the account's session file lives (``session_file`` or the data directory)."""
    if settings.session_file:
        path = Path(settings.session_file)
    else:
        path = Path(data_dir) / "sessions" / f"{account}.session"
    return path if path.suffix == ".session" else path.with_name(path.name + ".session")


def open_session_file(path: Path) -> SQLiteSession:
    """The SQLite session at ``path``, created with mode 0600 (directory 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    return SQLiteSession(str(path))


class SessionFailedError(Exception):
    """The account's session is unusable (revoked); answered ``Unavailable``."""


class SessionActor(Actor):
    """Owns one account's Telethon client; answers the session conversation."""

    def __init__(
        self,
        ctx: ActorContext,
        account: str,
        settings: AccountSettings,
        session_settings: SessionSettings,
        data_dir: str | os.PathLike[str],
    ) -> None:
        super().__init__(ctx)
        self.account = account
        self.settings = settings
        self.timing = session_settings
        self.data_dir = data_dir
        self.state: SessionStateName = "disconnected"
        self.state_reason = ""
        self.reconnects = 0
        self._loop = get_loop_thread()
        self._lock: SessionFileLock | None = None
        self._client: TelegramClient | None = None
        self._gate: asyncio.Lock | None = None
        self._connected: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._me: types.User | None = None
        self._last_activity = time.monotonic()
        self._last_update = 0.0
        self._dirty = False
        self._phone = ""
        self._key_revoked = False
        self._qr_task: asyncio.Task[types.User] | None = None
        self._qr_expires = 0
        self._flood = FloodControl(self._limits())

    def _limits(self) -> dict[str, RateLimit]:
        limits = dict(BOT_LIMITS if self.settings.kind == "bot" else USER_LIMITS)
        for name, limit in self.settings.limits.items():
            limits[name] = RateLimit(rate_per_s=limit.rate_per_s, burst=limit.burst)
        return limits

    # -- lifecycle (the mailbox thread) ----------------------------------------------------

    def on_start(self) -> None:
        session = self._open_session()
        try:
            self._loop.run(self._boot(session), timeout=self.timing.ping_timeout_s)
        except BaseException:
            self._release_lock()
            raise

    def on_stop(self) -> None:
        try:
            self._loop.run(self._shutdown(), timeout=self.timing.ping_timeout_s)
        finally:
            self._release_lock()

    def _open_session(self) -> Session:
        if self.settings.session_string:
            return StringSession(self.settings.session_string.reveal())
        path = session_path(self.account, self.settings, self.data_dir)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = SessionFileLock(path)
        self._lock.acquire()
        return open_session_file(path)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the loop thread ---------------------------------------------------------------

    async def _boot(self, session: Session) -> None:
        server = self.settings.server
        if server is not None:
            if server.public_key_file:
                telethon.crypto.rsa.add_key(rsa_public_key_pem(server.public_key_file), old=False)
            if (session.server_address, session.port) != (server.host, server.port):
                session.set_dc(server.dc_id, server.host, server.port)
        self._client = TelegramClient(
            session,
            self.settings.api_id or _ANY_API_ID,
            self.settings.api_hash.reveal() if self.settings.api_hash else _ANY_API_HASH,
            flood_sleep_threshold=0,  # flood waits are ours to schedule, see FloodControl
            catch_up=True,
            receive_updates=True,
        )
        self._gate = asyncio.Lock()
        self._connected = asyncio.Event()
        client = self._client
        client.add_event_handler(self._on_new_message, events.NewMessage(incoming=True))
        client.add_event_handler(self._on_edited, events.MessageEdited())
        client.add_event_handler(self._on_deleted, events.MessageDeleted())
        client.add_event_handler(self._on_callback, events.CallbackQuery())
        client.add_event_handler(self._on_any_update, events.Raw())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep_connected(), name=f"session-{self.account}-watchdog"),
            loop.create_task(self._save_state(), name=f"session-{self.account}-state"),
        ]

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._qr_task is not None:
            self._qr_task.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.disconnect()  # also saves update state and entities
            self._client.session.close()
        self._set_state("disconnected", "actor stopped")

    async def _keep_connected(self) -> None:
        """The watchdog: runs until the actor stops, whatever fails inside it."""
        while True:
            try:
                await self._watch()
                return
            except Exception as exc:
                # A bug of ours must not leave the account silently unwatched.
                self.ctx.log.error("watchdog failed; restarting it", error=repr(exc))
                self._set_state("disconnected", f"watchdog: {type(exc).__name__}")
                await asyncio.sleep(self.timing.reconnect_initial_s)

    async def _watch(self) -> None:
        """Connect, check the connection when quiet, reconnect with capped backoff.

        Returns only when the session is revoked (state ``failed``).
        """
        assert self._client is not None and self._connected is not None
        client = self._client
        delay = self.timing.reconnect_initial_s
        first = True
        unknown_key = 0
        while True:
            if not client.is_connected():
                self._connected.clear()
                if not first:
                    self.reconnects += 1
                self._set_state("connecting", "" if first else "reconnecting")
                try:
                    await asyncio.wait_for(self._connect(), self.timing.ping_timeout_s * 3)
                except (tg_errors.AuthKeyError, tg_errors.UnauthorizedError) as exc:
                    self._set_state("failed", f"{type(exc).__name__}: session revoked")
                    self._connected.set()  # waiting requests learn it at once
                    return
                except Exception as exc:
                    unknown_key = unknown_key + 1 if isinstance(exc, AuthKeyNotFound) else 0
                    if unknown_key >= _UNKNOWN_KEY_LIMIT:
                        unknown_key = 0
                        if not await self._auth_key_revoked():
                            return
                        continue
                    self._set_state("disconnected", f"{type(exc).__name__}", retry_after=delay)
                    with contextlib.suppress(Exception):
                        await client.disconnect()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.timing.reconnect_max_s)
                    continue
                first = False
                delay = self.timing.reconnect_initial_s
            quiet = time.monotonic() - self._last_activity
            if quiet >= self.timing.watchdog_interval_s:
                await self._ping()
                continue
            await asyncio.sleep(min(self.timing.watchdog_interval_s - quiet, 1.0))

    async def _auth_key_revoked(self) -> bool:
        """The server keeps answering -404: it does not know our auth key (revoked).

        A bot starts a new key and logs in again with its token (True: reconnect). A user
        account is marked failed, its session file left as it is, until someone logs in
        again (False: stop reconnecting).
        """
        client = self.client
        with contextlib.suppress(Exception):
            await client.disconnect()
        if self.settings.kind == "bot" and self.settings.bot_token:
            self.ctx.log.error("auth key unknown to the server; new key, bot token login")
            self._forget_auth_key()
            return True
        self._key_revoked = True
        self._me = None
        reason = (
            "the server does not know this session's auth key (revoked?): "
            f"log in again with `run.py login {self.account}`"
        )
        self.ctx.log.error("session revoked", account=self.account, reason=reason)
        self._set_state("failed", reason)
        assert self._connected is not None
        self._connected.set()  # waiting requests learn it at once
        return False

    def _forget_auth_key(self) -> None:
        """Drop the auth key so the next connect makes a new one (a new, logged-out session)."""
        client = self.client
        self._me = None
        client.session.auth_key = None
        client.session.save()
        client._sender.auth_key.key = None  # Telethon's sender keeps a copy of its own
        client._authorized = None  # and remembers it was authorized: make it ask again

    async def _recover_revoked(self) -> None:
        """Before a new login: replace a revoked key and reconnect (no-op otherwise)."""
        if not self._key_revoked:
            return
        assert self._connected is not None
        self._key_revoked = False
        self._forget_auth_key()
        self._connected.clear()
        self._set_state("connecting", "new auth key for a new login")
        loop = asyncio.get_running_loop()
        self._tasks.append(
            loop.create_task(self._keep_connected(), name=f"session-{self.account}-watchdog")
        )

    async def _connect(self) -> None:
        assert self._client is not None and self._connected is not None
        client = self._client
        await client.connect()
        self._last_activity = time.monotonic()
        self._set_state("connected")
        authorized = await client.is_user_authorized()
        refused = ""
        if not authorized and self.settings.kind == "bot" and self.settings.bot_token:
            try:
                await client.sign_in(bot_token=self.settings.bot_token.reveal())
                authorized = True
            except tg_errors.BadRequestError as exc:
                # ACCESS_TOKEN_INVALID and the like: no reconnect fixes the token, so
                # report it instead of retrying the login forever.
                refused = f"bot token refused: {type(exc).__name__}"
        if authorized:
            self._me = await client.get_me()
            self._set_state("authorized")
            _catch_up_channels(client)
            await client.catch_up()
        else:
            self._set_state("unauthorized", refused or "log in with `run.py login`")
        self._connected.set()

    async def _ping(self) -> None:
        """A cheap request; a connection that does not answer in time is dropped."""
        assert self._client is not None
        try:
            await asyncio.wait_for(
                self._client(functions.updates.GetStateRequest()), self.timing.ping_timeout_s
            )
        except (tg_errors.UnauthorizedError, tg_errors.AuthKeyError):
            self._last_activity = time.monotonic()
            self._set_state("unauthorized", "not logged in")
        except Exception as exc:
            self._set_state("disconnected", f"watchdog: {type(exc).__name__}")
            with contextlib.suppress(Exception):
                await self._client.disconnect()
        else:
            self._last_activity = time.monotonic()

    async def _save_state(self) -> None:
        """Persist update state and entities as they advance (not only at shutdown).

        A failed save is logged and retried at the next interval; it never ends the task.
        """
        assert self._client is not None
        while True:
            await asyncio.sleep(self.timing.state_save_interval_s)
            if not (self._dirty and self._client.is_connected()):
                continue
            self._dirty = False
            try:
                await self._client._save_states_and_entities()
                self._client.session.save()
            except Exception as exc:
                self._dirty = True
                self.ctx.log.error("saving update state failed", error=repr(exc))

    def _set_state(
        self, state: SessionStateName, reason: str = "", retry_after: float = 0.0
    ) -> None:
        if state == self.state and not reason:
            return
        self.state, self.state_reason = state, reason
        self.ctx.log.info("session state", account=self.account, state=state, reason=reason)
        event = SessionState(
            account=self.account, state=state, reason=reason, retry_after=retry_after
        )
        self.ctx.publish(session_topic(self.account), event)

    # -- requests ------------------------------------------------------------------------

    async def guard(self, work: Awaitable[Message], body: Message, env: Envelope) -> Message:
        """Every request on the loop: its deadline, and Telegram's errors as typed errors."""
        left = (env.deadline - time.time()) if env.deadline else _DEFAULT_DEADLINE_S
        try:
            return await asyncio.wait_for(work, max(left, 0.001))
        except SessionFailedError as exc:
            return errors.Unavailable(message=str(exc))
        except FloodWaitError as exc:
            return errors.FloodWait(
                retry_after=exc.retry_after, method=exc.method, message=f"{exc.method} flood-waited"
            )
        except TimeoutError:
            return errors.Timeout(
                message=f"{type(body).__name__} did not finish before the deadline"
            )
        except Exception as exc:
            typed = convert.error(exc)
            if typed is None:
                raise
            return typed

    async def _telegram(
        self,
        method: str,
        env: Envelope,
        call: Callable[[], Awaitable[T]],
        *,
        exclusive: bool = False,
        chat: int = 0,
    ) -> T:
        """Run one Telegram call on the loop: flood control first, then the call.

        ``exclusive`` calls (side effects: send, join, leave, answer, log in and out) run
        one at a time in arrival order, behind the gate; reads are pipelined over the one
        connection. A flood wait is always spent outside the gate. Raises FloodWaitError
        at once when the wait would pass the request's deadline. With ``chat`` (a bot's
        sends and edits) a flood wait holds that chat only: Telegram limits bots per chat.
        """
        assert self._gate is not None and self._connected is not None
        deadline = env.deadline or None
        scope = str(chat) if chat else ""
        while True:
            await self._flood.acquire(method, deadline, scope)
            await self._connected.wait()
            if self.state == "failed":
                raise SessionFailedError(f"{self.account}'s session was revoked; log in again")
            try:
                if exclusive:
                    async with self._gate:
                        result = await call()
                else:
                    result = await call()
            except tg_errors.FloodWaitError as exc:
                self._flood.record_flood_wait(method, float(exc.seconds), scope)
                if scope:
                    forget_flood_wait(self.client, exc.request)
                self._set_state("flood-wait", method, retry_after=float(exc.seconds))
                continue
            # Telethon stores the entities every answer carries; have them saved soon.
            self._dirty = True
            self._last_activity = time.monotonic()
            return result

    @property
    def client(self) -> TelegramClient:
        assert self._client is not None
        return self._client

    async def _entity(self, ref: s.PeerRef, env: Envelope) -> Any:
        """Resolve a username, t.me link or known id to a Telethon entity.

        Raises ValueError (-> NotFound) for anything unknown or unparsable.
        """
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            peer_id = int(ref)
            return await self._telegram("GetEntity", env, lambda: self.client.get_entity(peer_id))
        username, is_invite = utils.parse_username(ref)
        if not username:
            raise ValueError(f"not a username, link or id: {ref!r}")
        if is_invite:
            invite = await self._telegram(
                "CheckChatInviteRequest",
                env,
                lambda: self.client(functions.messages.CheckChatInviteRequest(username)),
            )
            if isinstance(invite, (types.ChatInviteAlready, types.ChatInvitePeek)):
                return invite.chat
            raise ValueError(f"not a member of the chat behind {ref!r}; join it first")
        return await self._telegram(
            "ResolveUsernameRequest", env, lambda: self.client.get_entity(username)
        )

    async def _input(self, ref: s.PeerRef, env: Envelope) -> Any:
        """An input peer: from the session's cache when known, else resolved (see _entity)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            key: int | str = int(ref)
        else:
            username, is_invite = utils.parse_username(ref)
            key = "" if is_invite or not username else username
        if key:
            try:
                return self.client.session.get_input_entity(key)
            except ValueError:
                pass  # not cached: resolve it, which also caches it
        return utils.get_input_peer(await self._entity(ref, env))

    async def _peer_of(self, result: Any, peer: Any, env: Envelope) -> s.Peer:
        """The Peer a result is about: from the chats it carries, else fetched."""
        wanted = utils.get_peer_id(peer)
        for chat in [*getattr(result, "chats", ()), *getattr(result, "users", ())]:
            if utils.get_peer_id(chat) == wanted:
                return convert.peer(chat)
        entity = await self._telegram("GetEntity", env, lambda: self.client.get_entity(peer))
        return convert.peer(entity)

    @handles(s.GetMe)
    async def _get_me(self, body: s.GetMe, env: Envelope) -> Message:
        me = await self._telegram("GetUsersRequest", env, lambda: self.client.get_me())
        if me is None:
            return errors.Unauthorized(message=f"{self.account} is not logged in")
        return s.Me(user=convert.user(me))

    @handles(s.ResolvePeer)
    async def _resolve(self, body: s.ResolvePeer, env: Envelope) -> Message:
        return convert.peer(await self._entity(body.peer, env))

    @handles(s.JoinChannel)
    async def _join(self, body: s.JoinChannel, env: Envelope) -> Message:
        if isinstance(body.peer, str):
            username, is_invite = utils.parse_username(body.peer)
            if is_invite and username:
                updates = await self._telegram(
                    "ImportChatInviteRequest",
                    env,
                    lambda: self.client(functions.messages.ImportChatInviteRequest(username)),
                    exclusive=True,
                )
                return s.Joined(peer=convert.peer(updates.chats[0]))
        peer = await self._input(body.peer, env)
        updates = await self._telegram(
            "JoinChannelRequest",
            env,
            lambda: self.client(functions.channels.JoinChannelRequest(peer)),
            exclusive=True,
        )
        return s.Joined(peer=await self._peer_of(updates, peer, env))

    @handles(s.LeaveChannel)
    async def _leave(self, body: s.LeaveChannel, env: Envelope) -> Message:
        peer = await self._input(body.peer, env)
        updates = await self._telegram(
            "LeaveChannelRequest",
            env,
            lambda: self.client(functions.channels.LeaveChannelRequest(peer)),
            exclusive=True,
        )
        return s.Left(peer=await self._peer_of(updates, peer, env))

    @handles(s.FetchHistory)
    async def _history(self, body: s.FetchHistory, env: Envelope) -> Message:
        if not 1 <= body.limit <= _MAX_HISTORY:
            return errors.BadRequest(message=f"limit must be 1..{_MAX_HISTORY}, got {body.limit}")
        if body.offset_id < 0 or body.min_id < 0:
            return errors.BadRequest(message="offset_id and min_id must not be negative")
        peer = await self._input(body.peer, env)
        messages = await self._telegram(
            "GetHistoryRequest",
            env,
            lambda: self.client.get_messages(
                peer, limit=body.limit, offset_id=body.offset_id, min_id=body.min_id
            ),
        )
        chat = messages[0].chat if messages else None
        # An empty page (a monitor's routine check) costs no second call for the peer.
        if chat is not None:
            about = convert.peer(chat)
        elif isinstance(peer, types.InputPeerSelf):  # its id is only known by asking
            about = await self._peer_of(None, peer, env)
        else:
            about = convert.input_peer(peer)
        return s.History(peer=about, messages=[convert.message(m) for m in messages])

    @handles(s.SendMessage)
    async def _send(self, body: s.SendMessage, env: Envelope) -> Message:
        if not env.idempotency_key:
            return errors.BadRequest(message="SendMessage needs an idempotency key")
        problem = _text_problem(body.text)
        if problem is not None:
            return problem
        peer = await self._input(body.peer, env)
        request = functions.messages.SendMessageRequest(
            peer=peer,
            message=body.text,
            # Derived from the idempotency key, so Telegram deduplicates a repeat too,
            # even one that reaches a restarted actor.
            random_id=_random_id(self.account, env.idempotency_key),
            reply_to=types.InputReplyToMessage(body.reply_to) if body.reply_to else None,
            reply_markup=_markup(self.client, body.buttons),
        )
        result = await self._telegram(
            "SendMessageRequest",
            env,
            lambda: self.client(request),
            exclusive=True,
            chat=self._bot_chat(peer),
        )
        sent = self.client._get_response_message(request, result, peer)
        return s.Sent(message=convert.message(sent))

    def _bot_chat(self, peer: Any) -> int:
        """The chat a bot's send goes to, for per-chat flood waits (0 for a user account)."""
        return utils.get_peer_id(peer) if self.settings.kind == "bot" else 0

    @handles(s.EditMessage)
    async def _edit(self, body: s.EditMessage, env: Envelope) -> Message:
        problem = _text_problem(body.text)
        if problem is not None:
            return problem
        if body.message_id <= 0:
            return errors.BadRequest(message=f"MESSAGE_ID_INVALID: {body.message_id}")
        peer = await self._input(body.peer, env)
        markup = _markup(self.client, body.buttons)
        try:
            edited = await self._telegram(
                "EditMessageRequest",
                env,
                lambda: self.client.edit_message(
                    peer, body.message_id, body.text, parse_mode=None, buttons=markup
                ),
                exclusive=True,
                chat=self._bot_chat(peer),
            )
        except tg_errors.MessageNotModifiedError:
            # Already as asked (a repeat, or a menu redrawn unchanged): not the caller's
            # error; the answer is the message as it is.
            edited = await self._telegram(
                "GetMessagesRequest",
                env,
                lambda: self.client.get_messages(peer, ids=body.message_id),
            )
            if edited is None:
                return errors.NotFound(message=f"MESSAGE_ID_INVALID: {body.message_id}")
        return s.Sent(message=convert.message(edited))

    @handles(s.AnswerCallback)
    async def _answer_callback(self, body: s.AnswerCallback, env: Envelope) -> Message:
        request = functions.messages.SetBotCallbackAnswerRequest(
            query_id=body.query_id, cache_time=0, alert=body.alert, message=body.text or None
        )
        await self._telegram(
            "SetBotCallbackAnswerRequest", env, lambda: self.client(request), exclusive=True
        )
        return s.Answered()

    @handles(s.GetDialogs)
    async def _dialogs(self, body: s.GetDialogs, env: Envelope) -> Message:
        if not 1 <= body.limit <= _MAX_HISTORY:
            return errors.BadRequest(message=f"limit must be 1..{_MAX_HISTORY}, got {body.limit}")
        dialogs = await self._telegram(
            "GetDialogsRequest", env, lambda: self.client.get_dialogs(limit=body.limit)
        )
        return s.Dialogs(dialogs=[convert.dialog(d) for d in dialogs])

    # -- login ---------------------------------------------------------------------------

    @handles(s.StartLogin)
    async def _start_login(self, body: s.StartLogin, env: Envelope) -> Message:
        if self.settings.kind == "bot":
            return errors.BadRequest(message="bot accounts log in with their bot_token")
        if not utils.parse_phone(body.phone):  # Telethon would fail with a TypeError
            return errors.BadRequest(message="PHONE_NUMBER_INVALID: not a phone number")
        await self._recover_revoked()
        sent = await self._telegram(
            "SendCodeRequest",
            env,
            lambda: self.client.send_code_request(body.phone),
            exclusive=True,
        )
        self._phone = body.phone
        return s.CodeSent(phone=body.phone, via=type(sent.type).__name__)

    @handles(s.SubmitCode)
    async def _submit_code(self, body: s.SubmitCode, env: Envelope) -> Message:
        if not self._phone:
            return errors.BadRequest(message="no login in progress: send StartLogin first")
        try:
            me = await self._telegram(
                "SignInRequest",
                env,
                lambda: self.client.sign_in(self._phone, body.code),
                exclusive=True,
            )
        except tg_errors.SessionPasswordNeededError:
            return s.PasswordNeeded(hint=await self._password_hint(env))
        return await self._logged_in(me)

    async def _password_hint(self, env: Envelope) -> str:
        settings = await self._telegram(
            "GetPasswordRequest", env, lambda: self.client(functions.account.GetPasswordRequest())
        )
        return settings.hint or ""

    @handles(s.SubmitPassword)
    async def _submit_password(self, body: s.SubmitPassword, env: Envelope) -> Message:
        me = await self._telegram(
            "CheckPasswordRequest",
            env,
            lambda: self.client.sign_in(password=body.password),
            exclusive=True,
        )
        return await self._logged_in(me)

    @handles(s.StartQrLogin)
    async def _start_qr(self, body: s.StartQrLogin, env: Envelope) -> Message:
        if self.settings.kind == "bot":
            return errors.BadRequest(message="bot accounts log in with their bot_token")
        await self._recover_revoked()
        qr = await self._telegram(
            "ExportLoginTokenRequest", env, lambda: self.client.qr_login(), exclusive=True
        )
        if self._qr_task is not None:
            self._qr_task.cancel()
        self._qr_expires = int(qr.expires.timestamp())
        timeout = max(1.0, self._qr_expires - time.time())
        self._qr_task = asyncio.get_running_loop().create_task(qr.wait(timeout))
        return s.QrLogin(url=qr.url, expires_at=self._qr_expires)

    @handles(s.QrLoginStatus)
    async def _qr_status(self, body: s.QrLoginStatus, env: Envelope) -> Message:
        task = self._qr_task
        if task is None:
            return errors.BadRequest(message="no QR login in progress: send StartQrLogin first")
        if not task.done():
            return s.QrLoginState(state="waiting")
        self._qr_task = None
        if not task.cancelled() and isinstance(
            task.exception(), tg_errors.SessionPasswordNeededError
        ):
            hint = await self._password_hint(env)
            return s.QrLoginState(state="password_needed", hint=hint)
        if task.cancelled() or task.exception() is not None:
            return s.QrLoginState(state="expired")
        logged = await self._logged_in(task.result())
        assert isinstance(logged, s.LoggedIn)
        return s.QrLoginState(state="done", user=logged.user)

    async def _logged_in(self, me: Any) -> Message:
        self._me = me if isinstance(me, types.User) else await self.client.get_me()
        self._set_state("authorized", "logged in")
        self.client.session.save()
        return s.LoggedIn(user=convert.user(self._me))

    @handles(s.LogOut)
    async def _log_out(self, body: s.LogOut, env: Envelope) -> Message:
        # Not client.log_out(): it deletes the session file and sets client.session to
        # None, leaving the actor without a usable client (and the account unable to log in
        # again). Log out on Telegram and forget who we were, keeping the session.
        request = functions.auth.LogOutRequest()
        await self._telegram("LogOutRequest", env, lambda: self.client(request), exclusive=True)
        self.client._mb_entity_cache.set_self_user(None, None, None)
        self.client._authorized = False
        self._me = None
        self._set_state("unauthorized", "logged out")
        return s.LoggedOut()

    @handles(s.ExportSession)
    async def _export(self, body: s.ExportSession, env: Envelope) -> Message:
        allowed = self.settings.export_allowed
        if not any(fnmatch.fnmatchcase(env.sender, pattern) for pattern in allowed):
            return errors.Unauthorized(
                message=f"{env.sender} may not export {self.account}'s session "
                f"(see accounts.{self.account}.export_allowed)"
            )
        self.ctx.log.warning("session exported", account=self.account, to=env.sender)
        return s.SessionExport(session_string=StringSession.save(self.client.session))

    @handles(s.GetSessionStatus)
    async def _status(self, body: s.GetSessionStatus, env: Envelope) -> Message:
        age = time.monotonic() - self._last_update if self._last_update else -1.0
        return s.SessionStatus(
            account=self.account,
            state=self.state,
            authorized=self._me is not None,
            user=convert.user(self._me) if self._me is not None else None,
            flood_waits=self._flood.snapshot(),
            reconnects=self.reconnects,
            last_update_age_s=round(age, 3),
            reason=self.state_reason,
        )

    # -- events (the loop thread) --------------------------------------------------------

    async def _on_any_update(self, update: Any) -> None:
        self._last_activity = self._last_update = time.monotonic()
        self._dirty = True

    async def _on_new_message(self, event: events.NewMessage.Event) -> None:
        msg = convert.message(event.message)
        if event.is_channel and not event.is_group:
            post = NewPost(account=self.account, channel_id=event.chat_id, message=msg)
            self.ctx.publish(post_topic(event.chat_id), post)
            return
        if self._is_command(event, msg):
            await self._publish_command(event, msg, edited=False)
            return
        self.ctx.publish(message_topic(self.account), NewMessage(account=self.account, message=msg))

    def _is_command(self, event: events.NewMessage.Event, msg: s.ChatMessage) -> bool:
        return (
            self.settings.kind == "bot"
            and event.is_private
            and not event.out
            and msg.text.startswith("/")
        )

    async def _publish_command(
        self, event: events.NewMessage.Event, msg: s.ChatMessage, *, edited: bool
    ) -> None:
        head, _, args = msg.text.partition(" ")
        sender = await event.get_sender()
        command = BotCommand(
            account=self.account,
            command=head[1:].split("@", 1)[0],
            args=args.strip(),
            chat_id=event.chat_id,
            user_id=event.sender_id or 0,
            message_id=msg.id,
            username=getattr(sender, "username", "") or "",
            edited=edited,
        )
        self.ctx.publish(bot_topic(self.account), command)

    async def _on_edited(self, event: events.MessageEdited.Event) -> None:
        msg = convert.message(event.message)
        if event.is_channel and not event.is_group:
            edited = EditedPost(account=self.account, channel_id=event.chat_id, message=msg)
            self.ctx.publish(post_topic(event.chat_id), edited)
        elif self._is_command(event, msg):
            # A corrected command: the bot replaces its answer instead of adding one.
            await self._publish_command(event, msg, edited=True)

    async def _on_deleted(self, event: events.MessageDeleted.Event) -> None:
        if event.chat_id is not None:
            deleted = DeletedPost(
                account=self.account, channel_id=event.chat_id, message_ids=list(event.deleted_ids)
            )
            self.ctx.publish(post_topic(event.chat_id), deleted)

    async def _on_callback(self, event: events.CallbackQuery.Event) -> None:
        query = CallbackQuery(
            account=self.account,
            query_id=event.query.query_id,
            data=event.data or b"",
            chat_id=event.chat_id or 0,
            user_id=event.sender_id or 0,
            message_id=event.message_id or 0,
        )
        self.ctx.publish(bot_topic(self.account), query)


def _catch_up_channels(client: TelegramClient) -> None:
    """Make the client fetch the difference of every channel whose pts it knows.

    ``catch_up`` only asks for the account's difference, and Telegram does not report
    channel posts missed while disconnected there (the account's pts did not move), so
    without this they would only come after Telethon's 15-minute no-updates timeout. The
    update loop picks the marked channels up once ``catch_up`` wakes it.
    """
    box = client._message_box
    for entry in list(box.map):
        if isinstance(entry, int):  # channel ids; the account and secret entries are not
            box.try_begin_get_diff(entry, "reconnect")


def _text_problem(text: str) -> errors.BadRequest | None:
    """Why Telegram would refuse ``text`` as a message, asked before any call; None if fine."""
    if not text.strip():
        return errors.BadRequest(message="MESSAGE_EMPTY: the text is empty")
    if len(text) > _MAX_TEXT:
        return errors.BadRequest(message=f"MESSAGE_TOO_LONG: over {_MAX_TEXT} characters")
    return None


def _random_id(account: str, key: str) -> int:
    digest = hashlib.sha256(f"{account}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _markup(client: TelegramClient, rows: list[list[s.Button]]) -> Any:
    if not rows:
        return None
    return client.build_reply_markup(
        [
            [TgButton.url(b.text, b.url) if b.url else TgButton.inline(b.text, b.data) for b in row]
            for row in rows
        ]
    )


def forget_flood_wait(client: TelegramClient, request: Any) -> None:
    """Make Telethon forget a flood wait it remembers for every request of this type.

    Telethon blocks all requests of a type after one FLOOD_WAIT (``users.py``), but a
    bot's send limits are per chat: the session's FloodControl keeps the wait for that
    chat, so the other chats are not held by Telethon's record.
    """
    if request is not None:
        client._flood_waited_requests.pop(request.CONSTRUCTOR_ID, None)
