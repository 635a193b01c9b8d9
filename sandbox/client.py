"""Pointing an unmodified Telethon client at a sandbox."""

from __future__ import annotations

from typing import Any, Protocol

import telethon.crypto.rsa
from telethon import TelegramClient
from telethon.sessions import MemorySession
from telethon.sessions.abstract import Session

from sandbox.world import DC_ID

#: Any api_id / api_hash will do: the sandbox does not check them.
API_ID = 1
API_HASH = "sandbox"


class SandboxAddress(Protocol):
    """What configure needs: a Sandbox, a SandboxThread or anything alike."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def public_key_pem(self) -> str: ...


def trust(sandbox: SandboxAddress) -> None:
    """Register the sandbox's RSA key with Telethon (process-wide, idempotent)."""
    telethon.crypto.rsa.add_key(sandbox.public_key_pem, old=False)


def configure(client: TelegramClient, sandbox: SandboxAddress) -> TelegramClient:
    """Make a not yet connected client talk to the sandbox: trust its key, set the DC.

    The auth key already in the client's session is kept, so a client pointed at a
    restarted sandbox with the same data directory stays logged in.
    """
    trust(sandbox)
    client.session.set_dc(DC_ID, sandbox.host, sandbox.port)
    return client


def new_client(
    sandbox: SandboxAddress, session: str | Session | None = None, **kwargs: Any
) -> TelegramClient:
    """A TelegramClient for the sandbox (in-memory session by default), not yet connected."""
    client = TelegramClient(session or MemorySession(), API_ID, API_HASH, **kwargs)
    return configure(client, sandbox)
