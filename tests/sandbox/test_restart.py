"""A sandbox restarted on the same data directory keeps keys, accounts and history."""

from __future__ import annotations

import asyncio
from pathlib import Path

from telethon import events, functions

from sandbox import WORLD_FILE, Sandbox, ephemeral_key
from sandbox.client import new_client
from tests.sandbox.conftest import next_item, next_phone


async def test_restart_with_the_saved_world(tmp_path: Path) -> None:
    # The process's key instead of generating one in tmp_path: same key, much faster.
    first = await Sandbox.start(tmp_path, key=ephemeral_key())
    port, pem = first.port, first.public_key_pem
    control = first.control
    phone = next_phone()
    account = control.create_user(phone, "Keeper")
    channel = control.create_channel("Archive", username="archive")
    for i in range(5):
        control.post(channel.id, f"old {i}")
    bot = control.create_bot("restart_bot")

    user = new_client(first)
    bot_client = new_client(first)
    try:
        await user.start(phone=phone, code_callback=lambda: control.last_login_code(phone))
        await user(functions.channels.JoinChannelRequest(await user.get_entity("archive")))
        await bot_client.start(bot_token=bot.token)
        await bot_client.disconnect()
        assert (tmp_path / WORLD_FILE).stat().st_mode & 0o777 == 0o600

        await first.stop()
        second = await Sandbox.start(tmp_path, port=port, key=ephemeral_key())
        try:
            assert second.public_key_pem == pem
            assert second.control.channel("archive").pts == 6
            # The connected user client reconnects on its own with the same auth key.
            me = await user.get_me()
            assert me.id == account.id
            history = await user.get_messages("archive", limit=10)
            assert [m.text for m in history] == [f"old {i}" for i in range(4, -1, -1)]

            posts: asyncio.Queue = asyncio.Queue()

            async def on_post(event: events.NewMessage.Event) -> None:
                await posts.put(event.raw_text)

            user.add_event_handler(on_post, events.NewMessage())
            second.control.post(channel.id, "after restart")
            assert await next_item(posts) == "after restart"

            # The bot's saved login still holds too.
            await bot_client.connect()
            assert await bot_client.is_user_authorized()
            assert (await bot_client.get_me()).id == bot.id
        finally:
            await user.disconnect()
            await bot_client.disconnect()
            await second.stop()
    finally:
        await first.stop()
