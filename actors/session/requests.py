"""The session conversation's requests on Telegram: peers, history, sending, dialogs,
and the account's own status and export.

Mixed into :class:`actors.session.SessionActor`; every handler runs on the loop thread and
every Telegram call goes through :meth:`Connection.call` (flood control, the gate for side
effects). A peer reference that names nothing reachable raises :class:`PeerNotFound`
(answered ``NotFound``); Telethon's ``ValueError`` is read as "not found" only around its
entity lookups, so a ``ValueError`` from anywhere else stays a bug (``Internal``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from typing import Any

from telethon import Button as TgButton
from telethon import TelegramClient, utils
from telethon import errors as tg_errors
from telethon.sessions import StringSession
from telethon.tl import functions, types

from actors import convert, telethon_compat
from actors.session.connection import Connection
from config import AccountSettings
from protocols import errors
from protocols import session as s
from protocols.base import Message
from protocols.envelope import Envelope
from runtime.actor import ActorContext
from runtime.handlers import handles

__all__ = ["PeerNotFound", "RequestHandlers"]

_MAX_TEXT = 4096
_MAX_HISTORY = 1000


class PeerNotFound(Exception):
    """A peer reference names nothing this account can reach; answered ``NotFound``."""


class RequestHandlers:
    """The session conversation's Telegram requests (a mixin of the session actor)."""

    ctx: ActorContext
    account: str
    settings: AccountSettings
    conn: Connection

    # -- peers ---------------------------------------------------------------------------

    async def _entity(self, ref: s.PeerRef, env: Envelope) -> Any:
        """Resolve a username, t.me link, invite link or known id to a Telethon entity.

        Raises PeerNotFound for anything unknown or unparsable.
        """
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            return await self._lookup("GetEntity", env, int(ref), ref)
        username, is_invite = utils.parse_username(ref)
        if not username:
            raise PeerNotFound(f"not a username, link or id: {ref!r}")
        if is_invite:
            invite = await self.conn.call(
                "CheckChatInviteRequest",
                env,
                lambda: self.conn.client(functions.messages.CheckChatInviteRequest(username)),
            )
            if isinstance(invite, (types.ChatInviteAlready, types.ChatInvitePeek)):
                return invite.chat
            raise PeerNotFound(f"not a member of the chat behind {ref!r}; join it first")
        return await self._lookup("ResolveUsernameRequest", env, username, ref)

    async def _lookup(self, method: str, env: Envelope, key: Any, ref: Any) -> Any:
        """Telethon's ``get_entity(key)``; its ValueError (unknown) as PeerNotFound."""
        try:
            return await self.conn.call(method, env, lambda: self.conn.client.get_entity(key))
        except ValueError as exc:
            raise PeerNotFound(f"{ref!r}: {exc}") from exc

    async def _input(self, ref: s.PeerRef, env: Envelope) -> Any:
        """An input peer: from the session's cache when known, else resolved (see _entity)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            key: int | str = int(ref)
        else:
            username, is_invite = utils.parse_username(ref)
            key = "" if is_invite or not username else username
        if key:
            try:
                return self.conn.client.session.get_input_entity(key)
            except ValueError:
                pass  # not cached: resolve it, which also caches it
        return utils.get_input_peer(await self._entity(ref, env))

    async def _peer_of(self, result: Any, peer: Any, env: Envelope) -> s.Peer:
        """The Peer a result is about: from the chats it carries, else fetched."""
        wanted = utils.get_peer_id(peer)
        for chat in [*getattr(result, "chats", ()), *getattr(result, "users", ())]:
            if utils.get_peer_id(chat) == wanted:
                return convert.peer(chat)
        return convert.peer(await self._lookup("GetEntity", env, peer, wanted))

    # -- handlers ------------------------------------------------------------------------

    @handles(s.GetMe)
    async def _get_me(self, body: s.GetMe, env: Envelope) -> Message:
        me = await self.conn.call("GetUsersRequest", env, lambda: self.conn.client.get_me())
        if me is None:
            return errors.Unauthorized(message=f"{self.account} is not logged in")
        return s.Me(user=convert.user(me))

    @handles(s.ResolvePeer)
    async def _resolve(self, body: s.ResolvePeer, env: Envelope) -> Message:
        return convert.peer(await self._entity(body.peer, env))

    @handles(s.JoinChannel)
    async def _join(self, body: s.JoinChannel, env: Envelope) -> Message:
        client = self.conn.client
        if isinstance(body.peer, str):
            username, is_invite = utils.parse_username(body.peer)
            if is_invite and username:
                updates = await self.conn.call(
                    "ImportChatInviteRequest",
                    env,
                    lambda: client(functions.messages.ImportChatInviteRequest(username)),
                    exclusive=True,
                )
                return s.Joined(peer=convert.peer(updates.chats[0]))
        peer = await self._input(body.peer, env)
        updates = await self.conn.call(
            "JoinChannelRequest",
            env,
            lambda: client(functions.channels.JoinChannelRequest(peer)),
            exclusive=True,
        )
        return s.Joined(peer=await self._peer_of(updates, peer, env))

    @handles(s.LeaveChannel)
    async def _leave(self, body: s.LeaveChannel, env: Envelope) -> Message:
        peer = await self._input(body.peer, env)
        updates = await self.conn.call(
            "LeaveChannelRequest",
            env,
            lambda: self.conn.client(functions.channels.LeaveChannelRequest(peer)),
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
        messages = await self.conn.call(
            "GetHistoryRequest",
            env,
            lambda: self.conn.client.get_messages(
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
        client = self.conn.client
        request = functions.messages.SendMessageRequest(
            peer=peer,
            message=body.text,
            # Derived from the idempotency key, so Telegram deduplicates a repeat too,
            # even one that reaches a restarted actor.
            random_id=_random_id(self.account, env.idempotency_key),
            reply_to=types.InputReplyToMessage(body.reply_to) if body.reply_to else None,
            reply_markup=_markup(client, body.buttons),
        )
        result = await self.conn.call(
            "SendMessageRequest",
            env,
            lambda: client(request),
            exclusive=True,
            chat=self._bot_chat(peer),
        )
        sent = telethon_compat.response_message(client, request, result, peer)
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
        client = self.conn.client
        markup = _markup(client, body.buttons)
        try:
            edited = await self.conn.call(
                "EditMessageRequest",
                env,
                lambda: client.edit_message(
                    peer, body.message_id, body.text, parse_mode=None, buttons=markup
                ),
                exclusive=True,
                chat=self._bot_chat(peer),
            )
        except tg_errors.MessageNotModifiedError:
            # Already as asked (a repeat, or a menu redrawn unchanged): not the caller's
            # error; the answer is the message as it is.
            edited = await self.conn.call(
                "GetMessagesRequest", env, lambda: client.get_messages(peer, ids=body.message_id)
            )
            if edited is None:
                return errors.NotFound(message=f"MESSAGE_ID_INVALID: {body.message_id}")
        return s.Sent(message=convert.message(edited))

    @handles(s.DeleteMessages)
    async def _delete(self, body: s.DeleteMessages, env: Envelope) -> Message:
        ids = body.message_ids
        if not ids:
            return errors.BadRequest(message="MESSAGE_IDS_EMPTY: no message ids")
        if len(ids) > s.MAX_DELETE:
            return errors.BadRequest(
                message=f"MESSAGE_IDS_TOO_MANY: at most {s.MAX_DELETE} ids, got {len(ids)}"
            )
        if any(i <= 0 for i in ids):
            return errors.BadRequest(message=f"MESSAGE_ID_INVALID: {min(ids)}")
        peer = await self._input(body.peer, env)
        request: Any = (
            functions.channels.DeleteMessagesRequest(utils.get_input_channel(peer), ids)
            if isinstance(peer, types.InputPeerChannel)
            else functions.messages.DeleteMessagesRequest(ids, revoke=body.revoke)
        )
        affected = await self.conn.call(
            "DeleteMessagesRequest",
            env,
            lambda: self.conn.client(request),
            exclusive=True,
            chat=self._bot_chat(peer),
        )
        return s.Deleted(count=affected.pts_count)

    @handles(s.AnswerCallback)
    async def _answer_callback(self, body: s.AnswerCallback, env: Envelope) -> Message:
        request = functions.messages.SetBotCallbackAnswerRequest(
            query_id=body.query_id, cache_time=0, alert=body.alert, message=body.text or None
        )
        await self.conn.call(
            "SetBotCallbackAnswerRequest", env, lambda: self.conn.client(request), exclusive=True
        )
        return s.Answered()

    @handles(s.GetDialogs)
    async def _dialogs(self, body: s.GetDialogs, env: Envelope) -> Message:
        if not 1 <= body.limit <= _MAX_HISTORY:
            return errors.BadRequest(message=f"limit must be 1..{_MAX_HISTORY}, got {body.limit}")
        dialogs = await self.conn.call(
            "GetDialogsRequest", env, lambda: self.conn.client.get_dialogs(limit=body.limit)
        )
        return s.Dialogs(dialogs=[convert.dialog(d) for d in dialogs])

    @handles(s.ExportSession)
    async def _export(self, body: s.ExportSession, env: Envelope) -> Message:
        allowed = self.settings.export_allowed
        if not any(fnmatch.fnmatchcase(env.sender, pattern) for pattern in allowed):
            return errors.Unauthorized(
                message=f"{env.sender} may not export {self.account}'s session "
                f"(see accounts.{self.account}.export_allowed)"
            )
        self.ctx.log.warning("session exported", account=self.account, to=env.sender)
        return s.SessionExport(session_string=StringSession.save(self.conn.client.session))

    @handles(s.GetSessionStatus)
    async def _status(self, body: s.GetSessionStatus, env: Envelope) -> Message:
        conn = self.conn
        age = time.monotonic() - conn.last_update if conn.last_update else -1.0
        return s.SessionStatus(
            account=self.account,
            state=conn.state,
            authorized=conn.me is not None,
            user=convert.user(conn.me) if conn.me is not None else None,
            flood_waits=conn.flood.snapshot(),
            reconnects=conn.reconnects,
            last_update_age_s=round(age, 3),
            reason=conn.state_reason,
        )


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
