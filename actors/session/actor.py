"""The session actor's class and lifecycle: session storage, its lock, boot and shutdown,
and the mapping of every failure to a typed error.

The handlers live with their kind (:mod:`.requests`, :mod:`.login`); the live client and
its watchdog in :mod:`.connection`; update publishing in :mod:`.events`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from pathlib import Path

from telethon.sessions import SQLiteSession, StringSession
from telethon.sessions.abstract import Session

from actors import convert
from actors.flood import FloodWaitError
from actors.session.connection import Connection, SessionFailedError
from actors.session.events import EventPublisher
from actors.session.login import LoginHandlers, PendingLogin
from actors.session.requests import PeerNotFound, RequestHandlers
from config import AccountSettings, SessionSettings
from protocols import errors
from protocols.base import Message
from protocols.envelope import Envelope
from protocols.session import session_address
from runtime.actor import ActorContext, AsyncActor
from runtime.locks import SessionFileLock

__all__ = ["SessionActor", "open_session_file", "session_address", "session_path"]

_DEFAULT_DEADLINE_S = 30.0


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


class SessionActor(RequestHandlers, LoginHandlers, AsyncActor):
    """Owns one account's Telethon client; answers the session conversation.

    An :class:`AsyncActor`: its mailbox, lifecycle and handlers all run on the process's
    asyncio loop, so an idle account costs no thread.
    """

    # Built once by on_start (on the loop), there for the actor's whole running life.
    conn: Connection

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
        self.login = PendingLogin()
        # Held for a session file; a session string has no file to lock.
        self._lock: SessionFileLock | None = None

    # -- lifecycle (on the loop) ---------------------------------------------------------

    async def on_start(self) -> None:
        session = self._open_session()
        try:
            async with asyncio.timeout(self.timing.ping_timeout_s):
                self.conn = await self._boot(session)
        except BaseException:
            self._release_lock()
            raise

    async def on_stop(self) -> None:
        try:
            async with asyncio.timeout(self.timing.ping_timeout_s):
                await self._shutdown()
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

    async def _boot(self, session: Session) -> Connection:
        conn = await Connection.open(self.ctx, self.account, self.settings, self.timing, session)
        EventPublisher(self.ctx, self.account, bot=self.settings.kind == "bot").attach(conn.client)
        conn.start()
        return conn

    async def _shutdown(self) -> None:
        self.login.cancel_qr()
        await self.conn.close()

    # -- every request -------------------------------------------------------------------

    async def guard(self, work: Awaitable[Message], body: Message, env: Envelope) -> Message:
        """Every request on the loop: its deadline, and Telegram's errors as typed errors.

        Anything else (a bug of ours) is raised, and answered ``Internal``.
        """
        left = (env.deadline - time.time()) if env.deadline else _DEFAULT_DEADLINE_S
        try:
            return await asyncio.wait_for(work, max(left, 0.001))
        except PeerNotFound as exc:
            return errors.NotFound(message=str(exc))
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
