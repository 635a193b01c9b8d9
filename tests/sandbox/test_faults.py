"""Injected faults against unmodified Telethon: flood waits, drops, delays, lost keys."""

from __future__ import annotations

import asyncio

import pytest
from telethon import errors, functions, types

from sandbox.control import Control
from tests.sandbox.conftest import DELIVERY_TIMEOUT, Clients

HISTORY = "messages.getHistory"


def calls(control: Control, method: str) -> int:
    """How often the sandbox ran ``method`` so far."""
    return control.calls(method)[method]


async def reader_of_news(clients: Clients):
    """A user client and the entity of a public channel @news with three posts."""
    control = clients.sandbox.control
    channel = control.create_channel("News", username="news")
    for i in range(3):
        control.post(channel.id, f"post {i}")
    client, _ = await clients.user()
    return client, await client.get_entity("news")


async def test_flood_wait_below_the_threshold_is_slept_through(clients: Clients) -> None:
    client, news = await reader_of_news(clients)
    control = clients.sandbox.control
    assert client.flood_sleep_threshold >= 1
    control.flood(HISTORY, seconds=1, count=1)
    before = calls(control, HISTORY)
    messages = await client.get_messages(news, limit=3)
    assert [m.text for m in messages] == ["post 2", "post 1", "post 0"]
    # Refused once, then retried by Telethon itself after sleeping.
    assert calls(control, HISTORY) == before + 2


async def test_flood_wait_above_the_threshold_raises_and_is_remembered(clients: Clients) -> None:
    client, news = await reader_of_news(clients)
    control = clients.sandbox.control
    control.flood(HISTORY, seconds=client.flood_sleep_threshold + 60, count=1)
    with pytest.raises(errors.FloodWaitError) as raised:
        await client.get_messages(news, limit=3)
    assert raised.value.seconds == client.flood_sleep_threshold + 60
    before = calls(control, HISTORY)
    # Telethon remembers the wait per request type and refuses without asking the server.
    with pytest.raises(errors.FloodWaitError):
        await client.get_messages(news, limit=3)
    assert calls(control, HISTORY) == before
    # Other methods are not affected.
    assert (await client.get_me()).first_name == "User"


async def test_flood_wait_for_a_time_window(clients: Clients) -> None:
    first, news = await reader_of_news(clients)
    second, _ = await clients.user()
    control = clients.sandbox.control
    control.flood(HISTORY, seconds=100, count=None, duration=3600)
    before = calls(control, HISTORY)
    # Every call in the window is refused by the server (two clients: Telethon's own
    # memory of the first refusal would keep the second call from reaching the server).
    for client in (first, second):
        with pytest.raises(errors.FloodWaitError):
            await client.get_messages(await client.get_input_entity(news.username), limit=1)
    assert calls(control, HISTORY) == before + 2
    control.clear_faults()
    third, _ = await clients.user()
    assert len(await third.get_messages("news", limit=1)) == 1


async def test_drop_before_execution_is_retried_once(clients: Clients) -> None:
    client, _ = await clients.user()
    bot = clients.sandbox.control.create_bot("drop_bot")
    control = clients.sandbox.control
    control.drop("messages.sendMessage", when="before", count=1)
    sent = await client.send_message("drop_bot", "hello")
    assert sent.text == "hello"
    assert [m.text for m in control.inbox(bot.id)] == ["hello"]
    assert calls(control, "messages.sendMessage") == 2


async def test_drop_after_execution_has_no_duplicate_side_effect(clients: Clients) -> None:
    client, account = await clients.user()
    bot = clients.sandbox.control.create_bot("dedup_bot")
    control = clients.sandbox.control
    control.drop("messages.sendMessage", when="after", count=1)
    sent = await client.send_message("dedup_bot", "exactly once")
    # The first attempt executed but its answer was lost with the connection; Telethon
    # re-sent the same request (same random_id) after reconnecting.
    assert calls(control, "messages.sendMessage") == 2
    assert [m.text for m in control.inbox(bot.id)] == ["exactly once"]
    assert [m.id for m in control.outbox(account.id)] == [sent.id]
    assert (await client.get_me()).id == account.id


async def test_delay_slows_answers_down(clients: Clients) -> None:
    client, news = await reader_of_news(clients)
    control = clients.sandbox.control
    control.delay(HISTORY, seconds=0.2, count=2)
    for _ in range(2):
        assert len(await client.get_messages(news, limit=2)) == 2
    assert control.faults.active() == []


async def test_stall_holds_answers_and_loses_pushes_until_cleared(clients: Clients) -> None:
    client, account = await clients.user()
    control = clients.sandbox.control
    channel = control.create_channel("Quiet", username="quiet")
    control.add_member(channel.id, account.id)
    await client.get_entity("quiet")
    control.stall(user_id=account.id)
    held = asyncio.ensure_future(client.get_me())
    control.post(channel.id, "lost on the way")
    # Nothing answers or pushes while the stall lasts (a lost push reports False).
    assert not clients.sandbox.world.push_to_user(account.id, types.UpdatesTooLong())
    done, _ = await asyncio.wait([held], timeout=0.5)
    assert not done
    control.clear_faults()
    assert (await asyncio.wait_for(held, DELIVERY_TIMEOUT)).id == account.id
    # Only the push was lost: the post is in the channel.
    assert [m.text for m in await client.get_messages("quiet", limit=1)] == ["lost on the way"]


async def test_forgotten_auth_key_ends_the_client(clients: Clients) -> None:
    client, account = await clients.user()
    control = clients.sandbox.control
    assert control.forget_auth_keys(account.id) == 1
    # The core answers -404 to the next packet; Telethon gives the client up for good.
    with pytest.raises(errors.AuthKeyNotFound):
        await client(functions.updates.GetStateRequest())
    assert control.online(account.id) is False
