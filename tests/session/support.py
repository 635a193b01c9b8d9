"""Helpers shared by the session request, login and ownership tests.

Nothing here stands in for our code: requests go through a real broker to real node
processes, or to real session actors hosted in this process (:class:`Hosted`), and the
"other people" of a test (a user pressing a button, a phone accepting a QR login) are
unmodified Telethon clients logged in to the sandbox from this process.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from telethon import TelegramClient

from actors import session_actors
from actors.session import session_address
from config import load_settings
from protocols import errors
from protocols import session as s
from protocols.base import Message
from runtime.client import Client
from runtime.errors import RequestError
from runtime.loop import LoopThread
from runtime.testing import ActorHarness
from sandbox import SandboxThread
from sandbox.client import new_client
from sandbox.control import Account
from tests.runtime.support import wait_until
from tests.session.conftest import Sessions

T = TypeVar("T")
E = TypeVar("E", bound=errors.Error)

#: A safety net against hangs for one request or one Telethon call, not a performance bound.
CALL_TIMEOUT = 30.0

_phones = itertools.count(1)


def refused(
    client: Client,
    target: str,
    body: Message,
    expected: type[E],
    idempotency_key: str = "",
) -> E:
    """Send ``body`` and return the typed error it must be answered with (``expected``)."""
    return raises(
        lambda: client.request(target, body, timeout=CALL_TIMEOUT, idempotency_key=idempotency_key),
        expected,
    )


def raises(request: Callable[[], object], expected: type[E]) -> E:
    """Run a typed request that must fail; return its typed error (``expected``)."""
    with pytest.raises(RequestError) as caught:
        request()
    error = caught.value.error
    assert isinstance(error, expected), f"{type(error).__name__}: {error.message}"
    return error


class Hosted:
    """Session actors of a :class:`Sessions` system's accounts, hosted in this process.

    Each is a real :class:`actors.session.SessionActor` (built from the same settings a
    node would read) in a real mailbox, on an :class:`runtime.testing.ActorHarness` that
    records what it publishes; only ZeroMQ and the node processes are left out. For the
    session's own logic; routing, ownership and restarts stay with the node tests.
    """

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.actors: dict[str, ActorHarness] = {}

    def start(self, account: str) -> ActorHarness:
        """Host ``account``'s session actor (configured already) and return its harness."""
        settings = load_settings(self.sessions.write_config(), env={})
        address = session_address(account)
        harness = ActorHarness(session_actors(settings, [account])[address], address=address)
        self.actors[account] = harness
        return harness

    def wait_state(self, account: str, state: str, timeout: float = CALL_TIMEOUT) -> None:
        """Wait until the account's session actor reports ``state``."""
        actor = self.actors[account]

        def reached() -> bool:
            return actor.request(s.GetSessionStatus(), timeout=CALL_TIMEOUT).state == state

        wait_until(reached, timeout, f"session:{account} to be {state}")

    def refused(
        self, account: str, body: Message, expected: type[E], idempotency_key: str = ""
    ) -> E:
        """Ask ``account``'s actor; return the typed error it must answer (``expected``)."""
        actor = self.actors[account]
        return raises(
            lambda: actor.request(body, timeout=CALL_TIMEOUT, idempotency_key=idempotency_key),
            expected,
        )

    def log_in(self, account: str, phone: str) -> s.User:
        """Log a hosted user account in through its session actor (phone code)."""
        assert self.sessions.sandbox is not None
        self.wait_state(account, "unauthorized")
        actor = self.actors[account]
        sent = actor.request(s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
        assert sent.phone == phone
        code = self.sessions.sandbox.control.last_login_code(phone)
        assert code
        logged = actor.request(s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
        assert isinstance(logged, s.LoggedIn), logged
        return logged.user

    def stop_all(self) -> None:
        for actor in self.actors.values():
            actor.stop()
        self.actors.clear()


def log_in(sessions: Sessions, client: Client, account: str, phone: str) -> s.User:
    """Log a configured user account in through its session actor (phone code)."""
    assert sessions.sandbox is not None
    sessions.wait_state(client, account, "unauthorized")
    address = f"session:{account}"
    sent = client.request(address, s.StartLogin(phone=phone), timeout=CALL_TIMEOUT)
    assert isinstance(sent, s.CodeSent) and sent.phone == phone
    code = sessions.sandbox.control.last_login_code(phone)
    assert code
    logged = client.request(address, s.SubmitCode(code=code), timeout=CALL_TIMEOUT)
    assert isinstance(logged, s.LoggedIn), logged
    return logged.user


class Phones:
    """Telethon clients of sandbox users, driven from the test on a loop thread of their own.

    They play the people around an account: someone who presses a bot's button, or the
    already logged-in phone that accepts a QR login.
    """

    def __init__(self, sandbox: SandboxThread) -> None:
        self.sandbox = sandbox
        self.loop = LoopThread(name="test-phones")
        self.clients: list[TelegramClient] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run a coroutine on the phones' loop and return its result."""
        return self.loop.run(coro, timeout)

    def user(self, first_name: str, username: str | None = None) -> tuple[TelegramClient, Account]:
        """A new sandbox user and a connected Telethon client logged in as it."""
        phone = f"+1666{next(_phones):07d}"
        account = self.sandbox.control.create_user(phone, first_name, username=username)
        return self.log_in(phone), account

    def log_in(self, phone: str) -> TelegramClient:
        """A connected Telethon client logged in (by phone code) as an existing user."""
        control = self.sandbox.control

        async def start() -> TelegramClient:
            client = new_client(self.sandbox)
            self.clients.append(client)
            await client.start(phone=phone, code_callback=lambda: control.last_login_code(phone))
            return client

        return self.run(start())

    def close(self) -> None:
        """Disconnect every client and stop the loop."""

        async def disconnect() -> None:
            for client in self.clients:
                await client.disconnect()

        self.run(disconnect())
        self.loop.stop()
