"""Fixtures: a running sandbox per test and a factory of logged-in Telethon clients.

Every client is an unmodified ``TelegramClient`` pointed at the sandbox with
:func:`sandbox.client.new_client`; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from telethon import TelegramClient

from sandbox import Sandbox
from sandbox.client import new_client
from sandbox.control import Account

#: How long a test waits for something the sandbox should deliver at once. A safety net
#: against hangs, not a performance threshold.
DELIVERY_TIMEOUT = 10.0

_phones = itertools.count(1)
_bots = itertools.count(1)


def next_phone() -> str:
    """A phone number no other test in this process used."""
    return f"+1555{next(_phones):07d}"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A fresh sandbox (empty world, no data directory) on free loopback ports."""
    sb = await Sandbox.start()
    try:
        yield sb
    finally:
        await sb.stop()


@dataclass
class Clients:
    """Makes connected, logged-in clients for one sandbox; disconnects them all at the end."""

    sandbox: Sandbox
    made: list[TelegramClient] = field(default_factory=list)

    def raw(self, **kwargs: Any) -> TelegramClient:
        """A client for the sandbox, not connected, in-memory session."""
        client = new_client(self.sandbox, **kwargs)
        self.made.append(client)
        return client

    async def bot(
        self, username: str | None = None, **kwargs: Any
    ) -> tuple[TelegramClient, Account]:
        """A new bot account and a client logged in with its token."""
        account = self.sandbox.control.create_bot(username or f"test{next(_bots)}_bot")
        client = self.raw(**kwargs)
        await client.start(bot_token=account.token)
        return client, account

    async def user(
        self, first_name: str = "User", username: str | None = None, **kwargs: Any
    ) -> tuple[TelegramClient, Account]:
        """A new user account and a client logged in with phone + login code."""
        phone = next_phone()
        account = self.sandbox.control.create_user(phone, first_name, username=username)
        client = self.raw(**kwargs)
        await self.login(client, phone)
        return client, account

    async def login(self, client: TelegramClient, phone: str) -> None:
        """Log a client in by phone, reading the code from the sandbox."""
        control = self.sandbox.control
        await client.start(phone=phone, code_callback=lambda: control.last_login_code(phone))

    async def close(self) -> None:
        for client in self.made:
            await client.disconnect()


@pytest.fixture
async def clients(sandbox: Sandbox) -> AsyncIterator[Clients]:
    """The client factory for the ``sandbox`` fixture."""
    factory = Clients(sandbox)
    try:
        yield factory
    finally:
        await factory.close()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], what: str = "condition"
) -> None:
    """Poll until ``predicate`` holds; fails the test after DELIVERY_TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_TIMEOUT
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def next_item(queue: asyncio.Queue[Any]) -> Any:
    """The next item from a queue filled by an event handler (fails after DELIVERY_TIMEOUT)."""
    try:
        return await asyncio.wait_for(queue.get(), DELIVERY_TIMEOUT)
    except TimeoutError:
        pytest.fail("no event arrived")
