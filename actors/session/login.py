"""Logging an account in and out: phone code, two-step password, QR login, log-out.

Mixed into :class:`actors.session.SessionActor`; handlers run on the loop thread, each
Telegram call behind the connection's gate. A login in progress (the phone a code was
sent to, a QR token being waited on) lives in :class:`PendingLogin`; a revoked session is
given a new auth key before a new login starts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from telethon import errors as tg_errors
from telethon import utils
from telethon.tl import functions, types

from actors import convert
from actors.session.connection import Connection
from config import AccountSettings
from protocols import errors
from protocols import session as s
from protocols.base import Message
from protocols.envelope import Envelope
from runtime.handlers import handles

__all__ = ["LoginHandlers", "PendingLogin"]

_BOT_LOGIN = "bot accounts log in with their bot_token"


@dataclass
class PendingLogin:
    """A login in progress: the phone a code went to, the QR token being waited on."""

    phone: str = ""
    qr: asyncio.Task[types.User] | None = None

    def cancel_qr(self) -> None:
        if self.qr is not None:
            self.qr.cancel()
            self.qr = None


class LoginHandlers:
    """The login requests (a mixin of the session actor)."""

    account: str
    settings: AccountSettings
    conn: Connection
    login: PendingLogin

    @handles(s.StartLogin)
    async def _start_login(self, body: s.StartLogin, env: Envelope) -> Message:
        if self.settings.kind == "bot":
            return errors.BadRequest(message=_BOT_LOGIN)
        if not utils.parse_phone(body.phone):  # Telethon would fail with a TypeError
            return errors.BadRequest(message="PHONE_NUMBER_INVALID: not a phone number")
        await self.conn.recover_revoked()
        sent = await self.conn.call(
            "SendCodeRequest",
            env,
            lambda: self.conn.client.send_code_request(body.phone),
            exclusive=True,
        )
        self.login.phone = body.phone
        return s.CodeSent(phone=body.phone, via=type(sent.type).__name__)

    @handles(s.SubmitCode)
    async def _submit_code(self, body: s.SubmitCode, env: Envelope) -> Message:
        if not self.login.phone:
            return errors.BadRequest(message="no login in progress: send StartLogin first")
        if not body.code.strip():
            # Telethon's sign_in would take an empty code as "send me a code again".
            return errors.BadRequest(message="PHONE_CODE_EMPTY: the code is empty")
        phone = self.login.phone
        try:
            me = await self.conn.call(
                "SignInRequest",
                env,
                lambda: self.conn.client.sign_in(phone, body.code),
                exclusive=True,
            )
        except tg_errors.SessionPasswordNeededError:
            return s.PasswordNeeded(hint=await self._password_hint(env))
        return s.LoggedIn(user=await self._logged_in(me))

    async def _password_hint(self, env: Envelope) -> str:
        settings = await self.conn.call(
            "GetPasswordRequest",
            env,
            lambda: self.conn.client(functions.account.GetPasswordRequest()),
        )
        return settings.hint or ""

    @handles(s.SubmitPassword)
    async def _submit_password(self, body: s.SubmitPassword, env: Envelope) -> Message:
        if not body.password:
            # Telethon's sign_in raises ValueError for it: the caller's mistake, not ours.
            return errors.BadRequest(message="PASSWORD_EMPTY: the password is empty")
        me = await self.conn.call(
            "CheckPasswordRequest",
            env,
            lambda: self.conn.client.sign_in(password=body.password),
            exclusive=True,
        )
        return s.LoggedIn(user=await self._logged_in(me))

    @handles(s.StartQrLogin)
    async def _start_qr(self, body: s.StartQrLogin, env: Envelope) -> Message:
        if self.settings.kind == "bot":
            return errors.BadRequest(message=_BOT_LOGIN)
        await self.conn.recover_revoked()
        qr = await self.conn.call(
            "ExportLoginTokenRequest", env, lambda: self.conn.client.qr_login(), exclusive=True
        )
        self.login.cancel_qr()
        expires = int(qr.expires.timestamp())
        timeout = max(1.0, expires - time.time())
        self.login.qr = asyncio.get_running_loop().create_task(qr.wait(timeout))
        return s.QrLogin(url=qr.url, expires_at=expires)

    @handles(s.QrLoginStatus)
    async def _qr_status(self, body: s.QrLoginStatus, env: Envelope) -> Message:
        task = self.login.qr
        if task is None:
            return errors.BadRequest(message="no QR login in progress: send StartQrLogin first")
        if not task.done():
            return s.QrLoginState(state="waiting")
        self.login.qr = None
        if not task.cancelled() and isinstance(
            task.exception(), tg_errors.SessionPasswordNeededError
        ):
            hint = await self._password_hint(env)
            return s.QrLoginState(state="password_needed", hint=hint)
        if task.cancelled() or task.exception() is not None:
            return s.QrLoginState(state="expired")
        return s.QrLoginState(state="done", user=await self._logged_in(task.result()))

    async def _logged_in(self, me: Any) -> s.User:
        user = me if isinstance(me, types.User) else await self.conn.client.get_me()
        self.conn.logged_in(user)
        return convert.user(user)

    @handles(s.LogOut)
    async def _log_out(self, body: s.LogOut, env: Envelope) -> Message:
        # Not client.log_out(): it deletes the session file and sets client.session to
        # None, leaving the actor without a usable client (and the account unable to log in
        # again). Log out on Telegram and forget who we were, keeping the session.
        request = functions.auth.LogOutRequest()
        await self.conn.call(
            "LogOutRequest", env, lambda: self.conn.client(request), exclusive=True
        )
        self.conn.logged_out()
        return s.LoggedOut()
