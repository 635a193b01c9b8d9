"""One account's connection: the live Telethon client, the watchdog that keeps it
connected, and the one path every Telegram call takes.

A :class:`Connection` is built once, on the loop, when the session actor boots
(:meth:`Connection.open`), and lives until the actor stops (:meth:`Connection.close`):
nothing in it is ever missing while the actor runs. Every method runs on the process's
asyncio loop thread.

* **Watchdog.** With no update for ``watchdog_interval_s`` a cheap request checks the
  connection; a silent or dropped connection is reconnected with capped exponential
  backoff, forever, every change published as a ``SessionState`` event. After every
  (re)connect, missed updates are caught up explicitly.
* **One path for calls** (:meth:`Connection.call`): flood control first, then the call;
  side effects one at a time behind a FIFO gate, reads pipelined.
* **Nothing lost, nothing twice.** Update state and entities are saved to the session as
  they advance (every ``state_save_interval_s`` while changing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import telethon.crypto.rsa
from telethon import TelegramClient, events
from telethon import errors as tg_errors
from telethon.errors import AuthKeyNotFound
from telethon.sessions.abstract import Session
from telethon.tl import functions, types

from actors import telethon_compat
from actors.flood import BOT_LIMITS, USER_LIMITS, FloodControl, RateLimit
from config import AccountSettings, SessionSettings
from config.keys import rsa_public_key_pem
from protocols.envelope import Envelope
from protocols.events import SessionState, SessionStateName, session_topic
from runtime.actor import ActorContext

__all__ = ["Connection", "SessionFailedError"]

T = TypeVar("T")

# The sandbox and Telegram both accept any application for a custom server.
_ANY_API_ID = 1
_ANY_API_HASH = "switchboard"
# Telegram also answers -404 for a while when it is in trouble: only this many in a row
# count as a revoked auth key.
_UNKNOWN_KEY_LIMIT = 3


class SessionFailedError(Exception):
    """The account's session is unusable (revoked); answered ``Unavailable``."""


class Connection:
    """The account's client and all the loop-side state that goes with it."""

    def __init__(
        self,
        ctx: ActorContext,
        account: str,
        settings: AccountSettings,
        timing: SessionSettings,
        client: TelegramClient,
    ) -> None:
        self.ctx = ctx
        self.account = account
        self.settings = settings
        self.timing = timing
        self.client = client
        self.state: SessionStateName = "disconnected"
        self.state_reason = ""
        self.reconnects = 0
        # Who the account is logged in as; None while it is not (a state, not "not yet").
        self.me: types.User | None = None
        self.flood = FloodControl(_limits(settings))
        self.last_update = 0.0
        self._gate = asyncio.Lock()
        self._connected = asyncio.Event()
        self._last_activity = time.monotonic()
        self._dirty = False
        self._key_revoked = False
        self._tasks: list[asyncio.Task[None]] = []
        client.add_event_handler(self._on_any_update, events.Raw())

    @classmethod
    async def open(
        cls,
        ctx: ActorContext,
        account: str,
        settings: AccountSettings,
        timing: SessionSettings,
        session: Session,
    ) -> Connection:
        """The account's client on ``session``, pointed at the configured server; not
        connected until :meth:`start`."""
        server = settings.server
        if server is not None:
            if server.public_key_file:
                telethon.crypto.rsa.add_key(rsa_public_key_pem(server.public_key_file), old=False)
            if (session.server_address, session.port) != (server.host, server.port):
                session.set_dc(server.dc_id, server.host, server.port)
        client = TelegramClient(
            session,
            settings.api_id or _ANY_API_ID,
            settings.api_hash.reveal() if settings.api_hash else _ANY_API_HASH,
            flood_sleep_threshold=0,  # flood waits are ours to schedule, see FloodControl
            catch_up=True,
            receive_updates=True,
        )
        return cls(ctx, account, settings, timing, client)

    def start(self) -> None:
        """Start the watchdog (which connects, in the background) and the state saving."""
        self._start_task(self._keep_connected(), "watchdog")
        self._start_task(self._save_state(), "state")

    async def close(self) -> None:
        """Stop the background tasks, disconnect (which saves update state and entities)
        and close the session storage. Never raises for a failed disconnect."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.client.disconnect()
        self.client.session.close()
        self.set_state("disconnected", "actor stopped")

    def _start_task(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"session-{self.account}-{name}")
        self._tasks.append(task)

    # -- calls ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        env: Envelope,
        call: Callable[[], Awaitable[T]],
        *,
        exclusive: bool = False,
        chat: int = 0,
    ) -> T:
        """Run one Telegram call: flood control first, then the call.

        ``exclusive`` calls (side effects: send, edit, join, leave, answer, log in and out)
        run one at a time in arrival order, behind the gate; reads are pipelined over the
        one connection. A flood wait is always spent outside the gate. With ``chat`` (a
        bot's sends and edits) a flood wait holds that chat only: Telegram limits bots per
        chat. Raises FloodWaitError at once when the wait would pass the request's
        deadline, and SessionFailedError once the session is revoked.
        """
        deadline = env.deadline or None
        scope = str(chat) if chat else ""
        while True:
            await self.flood.acquire(method, deadline, scope)
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
                self.flood.record_flood_wait(method, float(exc.seconds), scope)
                if scope:
                    telethon_compat.forget_flood_wait(self.client, exc.request)
                self.set_state("flood-wait", method, retry_after=float(exc.seconds))
                continue
            # Telethon stores the entities every answer carries; have them saved soon.
            self._dirty = True
            self._last_activity = time.monotonic()
            return result

    # -- who we are ----------------------------------------------------------------------

    def logged_in(self, me: types.User) -> None:
        """Record a finished login and save the session (its new auth key) at once."""
        self.me = me
        self.set_state("authorized", "logged in")
        self.client.session.save()

    def logged_out(self) -> None:
        """Record a log-out: the client forgets the user, the session stays usable."""
        telethon_compat.forget_self(self.client)
        self.me = None
        self.set_state("unauthorized", "logged out")

    async def recover_revoked(self) -> None:
        """Before a new login: replace a revoked key and reconnect (no-op otherwise)."""
        if not self._key_revoked:
            return
        self._key_revoked = False
        self._forget_auth_key()
        self._connected.clear()
        self.set_state("connecting", "new auth key for a new login")
        self._start_task(self._keep_connected(), "watchdog")

    def _forget_auth_key(self) -> None:
        self.me = None
        telethon_compat.forget_auth_key(self.client)

    def set_state(
        self, state: SessionStateName, reason: str = "", retry_after: float = 0.0
    ) -> None:
        """Record the session's state and publish it on ``session.<account>``."""
        if state == self.state and not reason:
            return
        self.state, self.state_reason = state, reason
        self.ctx.log.info("session state", account=self.account, state=state, reason=reason)
        event = SessionState(
            account=self.account, state=state, reason=reason, retry_after=retry_after
        )
        self.ctx.publish(session_topic(self.account), event)

    # -- the watchdog --------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        """The watchdog: runs until the actor stops, whatever fails inside it."""
        while True:
            try:
                await self._watch()
                return
            except Exception as exc:
                # A bug of ours must not leave the account silently unwatched.
                self.ctx.log.error("watchdog failed; restarting it", error=repr(exc))
                self.set_state("disconnected", f"watchdog: {type(exc).__name__}")
                await asyncio.sleep(self.timing.reconnect_initial_s)

    async def _watch(self) -> None:
        """Connect, check the connection when quiet, reconnect with capped backoff.

        Returns only when the session is revoked (state ``failed``).
        """
        client = self.client
        delay = self.timing.reconnect_initial_s
        first = True
        unknown_key = 0
        while True:
            if not client.is_connected():
                self._connected.clear()
                if not first:
                    self.reconnects += 1
                self.set_state("connecting", "" if first else "reconnecting")
                try:
                    await asyncio.wait_for(self._connect(), self.timing.ping_timeout_s * 3)
                except (tg_errors.AuthKeyError, tg_errors.UnauthorizedError) as exc:
                    self._key_revoked = True  # a new login starts with a new key
                    self.set_state("failed", f"{type(exc).__name__}: session revoked")
                    self._connected.set()  # waiting requests learn it at once
                    return
                except Exception as exc:
                    unknown_key = unknown_key + 1 if isinstance(exc, AuthKeyNotFound) else 0
                    if unknown_key >= _UNKNOWN_KEY_LIMIT:
                        unknown_key = 0
                        if not await self._auth_key_revoked():
                            return
                        continue
                    self.set_state("disconnected", f"{type(exc).__name__}", retry_after=delay)
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
        with contextlib.suppress(Exception):
            await self.client.disconnect()
        if self.settings.kind == "bot" and self.settings.bot_token:
            self.ctx.log.error("auth key unknown to the server; new key, bot token login")
            self._forget_auth_key()
            return True
        self._key_revoked = True
        self.me = None
        reason = (
            "the server does not know this session's auth key (revoked?): "
            f"log in again with `run.py login {self.account}`"
        )
        self.ctx.log.error("session revoked", account=self.account, reason=reason)
        self.set_state("failed", reason)
        self._connected.set()  # waiting requests learn it at once
        return False

    async def _connect(self) -> None:
        client = self.client
        await client.connect()
        self._last_activity = time.monotonic()
        self.set_state("connected")
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
            self.me = await client.get_me()
            self.set_state("authorized")
            telethon_compat.catch_up_channels(client)
            await client.catch_up()
        else:
            self.set_state("unauthorized", refused or "log in with `run.py login`")
        self._connected.set()

    async def _ping(self) -> None:
        """A cheap request; a connection that does not answer in time is dropped."""
        try:
            await asyncio.wait_for(
                self.client(functions.updates.GetStateRequest()), self.timing.ping_timeout_s
            )
        except (tg_errors.UnauthorizedError, tg_errors.AuthKeyError):
            self._last_activity = time.monotonic()
            self.set_state("unauthorized", "not logged in")
        except Exception as exc:
            self.set_state("disconnected", f"watchdog: {type(exc).__name__}")
            with contextlib.suppress(Exception):
                await self.client.disconnect()
        else:
            self._last_activity = time.monotonic()

    async def _save_state(self) -> None:
        """Persist update state and entities as they advance (not only at shutdown).

        A failed save is logged and retried at the next interval; it never ends the task.
        """
        while True:
            await asyncio.sleep(self.timing.state_save_interval_s)
            if not (self._dirty and self.client.is_connected()):
                continue
            self._dirty = False
            try:
                await telethon_compat.save_update_state(self.client)
                self.client.session.save()
            except Exception as exc:
                self._dirty = True
                self.ctx.log.error("saving update state failed", error=repr(exc))

    async def _on_any_update(self, update: Any) -> None:
        self._last_activity = self.last_update = time.monotonic()
        self._dirty = True


def _limits(settings: AccountSettings) -> dict[str, RateLimit]:
    limits = dict(BOT_LIMITS if settings.kind == "bot" else USER_LIMITS)
    for name, limit in settings.limits.items():
        limits[name] = RateLimit(rate_per_s=limit.rate_per_s, burst=limit.burst)
    return limits
