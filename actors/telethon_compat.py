"""Every place Switchboard reaches into Telethon's private attributes, and why.

Telethon 1.x offers no public way to do these few things a long-lived session actor
needs; each function here names what it relies on, so a Telethon upgrade that moves one
fails its test in ``tests/session/test_telethon_compat.py`` instead of an actor in the
field. Nothing else in the project may touch a ``_``-attribute of a Telethon object
(ruff's SLF rules mark any new one). All functions run on the client's event loop.
"""

from __future__ import annotations

from typing import Any

from telethon import TelegramClient
from telethon._updates import MessageBox
from telethon.sessions import MemorySession, SQLiteSession
from telethon.tl.tlobject import TLObject

__all__ = [
    "catch_up_channels",
    "forget_auth_key",
    "forget_flood_wait",
    "forget_self",
    "response_message",
    "save_update_state",
]


def forget_auth_key(client: TelegramClient) -> None:
    """Drop the client's auth key so its next connect makes a new one (a new, logged-out
    session), saved to the session storage at once. Call it while disconnected.

    The sender keeps a copy of the key (``_sender.auth_key``) and the client remembers it
    was authorized (``_authorized``); both are reset, or the old key would be used again
    and ``is_user_authorized`` would answer from memory. The old login's update state goes
    too (the ``MessageBox``, and the ``update_state`` rows that ``connect`` loads it from):
    with it, Telethon's update loop takes the new connection for a logged-in one that lost
    its authorization and disconnects it, cancelling the login under way.
    """
    session = client.session
    session.auth_key = None
    if isinstance(session, SQLiteSession):
        cursor = session._cursor()  # noqa: SLF001
        cursor.execute("delete from update_state")
        cursor.close()
    elif isinstance(session, MemorySession):
        session._update_states.clear()  # noqa: SLF001
    session.save()
    client._sender.auth_key.key = None  # noqa: SLF001
    client._authorized = None  # noqa: SLF001
    client._message_box = MessageBox(client._log["messagebox"])  # noqa: SLF001
    client._mb_entity_cache.set_self_user(None, None, None)  # noqa: SLF001


def forget_self(client: TelegramClient) -> None:
    """Make the client forget who it was logged in as, keeping the session usable.

    What ``client.log_out()`` does to the client besides deleting the session, which an
    actor that must log in again with the same client cannot afford.
    """
    client._mb_entity_cache.set_self_user(None, None, None)  # noqa: SLF001
    client._authorized = False  # noqa: SLF001


def forget_flood_wait(client: TelegramClient, request: Any) -> None:
    """Make Telethon forget a flood wait it remembers for every request of this type.

    Telethon blocks all requests of a type after one FLOOD_WAIT (``_flood_waited_requests``
    in ``users.py``), but a bot's send limits are per chat: the session's FloodControl
    keeps the wait for that chat, so the other chats are not held by Telethon's record.
    """
    if request is not None:
        client._flood_waited_requests.pop(request.CONSTRUCTOR_ID, None)  # noqa: SLF001


def response_message(client: TelegramClient, request: TLObject, result: Any, peer: Any) -> Any:
    """The Message a raw send request produced, found in Telegram's answer (the one
    ``client.send_message`` returns); None if the answer does not carry it."""
    return client._get_response_message(request, result, peer)  # noqa: SLF001


async def save_update_state(client: TelegramClient) -> None:
    """Write the update state and the entities seen so far to the session storage (what
    Telethon does only on disconnect); the caller commits with ``session.save()``."""
    await client._save_states_and_entities()  # noqa: SLF001


def catch_up_channels(client: TelegramClient) -> int:
    """Make the client fetch the difference of every channel whose pts it knows; returns
    how many channels it marked.

    ``catch_up`` only asks for the account's difference, and Telegram does not report
    channel posts missed while disconnected there (the account's pts did not move), so
    without this they would only come after Telethon's 15-minute no-updates timeout. The
    update loop picks the marked channels up once ``catch_up`` wakes it.
    """
    box = client._message_box  # noqa: SLF001
    channels = [entry for entry in list(box.map) if isinstance(entry, int)]
    for channel in channels:  # the account's and secret chats' entries are not ints
        box.try_begin_get_diff(channel, "reconnect")
    return len(channels)
