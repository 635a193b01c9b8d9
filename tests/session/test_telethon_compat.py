"""Each reach into Telethon's internals (actors/telethon_compat.py) still does its job.

Real Telethon clients logged in to a sandbox, driven on a loop thread of the test; a
Telethon upgrade that moves one of the private attributes fails here first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon import errors as tg_errors
from telethon import events, utils
from telethon.sessions import SQLiteSession
from telethon.tl import functions, types

from actors import telethon_compat
from sandbox import SandboxThread
from sandbox.client import new_client
from tests.session.support import CALL_TIMEOUT, Phones

DIFFERENCE = "updates.getChannelDifference"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxThread]:
    thread = SandboxThread().start()
    yield thread
    thread.stop()


def test_forget_auth_key_makes_a_new_logged_out_session(phones: Phones) -> None:
    client, _ = phones.user("Kim")

    async def forget() -> tuple[bytes, bytes | None, bool]:
        old = client.session.auth_key.key
        await client.disconnect()
        telethon_compat.forget_auth_key(client)
        assert client.session.auth_key is None
        await client.connect()
        return old, client.session.auth_key.key, await client.is_user_authorized()

    old, new, authorized = phones.run(forget())
    assert new and new != old
    assert not authorized


def test_a_new_login_after_forget_auth_key_keeps_its_connection(
    phones: Phones, sandbox: SandboxThread, tmp_path: Path
) -> None:
    # As a session actor's client: an SQLite session, catching up. Its old login's update
    # state would make Telethon's update loop disconnect the new, logged-out connection.
    phone = "+16669000001"
    user = sandbox.control.create_user(phone, "Ned")
    session = SQLiteSession(str(tmp_path / "ned.session"))
    client = new_client(sandbox, session, catch_up=True)
    phones.clients.append(client)
    code = sandbox.control.last_login_code

    async def log_in_again() -> tuple[list[object], int, bool]:
        await client.start(phone=phone, code_callback=lambda: code(phone))
        await client.catch_up()
        await client.disconnect()  # saves the update state, as the actor's stop does
        telethon_compat.forget_auth_key(client)
        states = list(client.session.get_update_states())
        await client.connect()
        await client.send_code_request(phone)
        me = await client.sign_in(phone, code(phone))
        return states, me.id, client.is_connected()

    states, me, connected = phones.run(log_in_again())
    assert states == []
    assert me == user.id and connected


def test_forget_self_leaves_a_usable_logged_out_client(phones: Phones) -> None:
    client, kim = phones.user("Kim")

    async def log_out() -> tuple[types.InputPeerUser | None, types.InputPeerUser | None, bool]:
        await client(functions.auth.LogOutRequest())
        cached = await client.get_me(input_peer=True)  # remembered, though logged out
        telethon_compat.forget_self(client)
        return cached, await client.get_me(input_peer=True), await client.is_user_authorized()

    cached, after, authorized = phones.run(log_out())
    assert cached is not None and cached.user_id == kim.id
    assert after is None and not authorized


def test_response_message_finds_the_sent_message(phones: Phones) -> None:
    client, _ = phones.user("Kim")
    _, lee = phones.user("Lee", username=f"lee{uuid.uuid4().hex[:8]}")

    async def send() -> types.Message:
        peer = await client.get_input_entity(lee.username)
        request = functions.messages.SendMessageRequest(
            peer=peer, message="hello Lee", random_id=12345
        )
        return telethon_compat.response_message(client, request, await client(request), peer)

    sent = phones.run(send())
    assert isinstance(sent, types.Message)
    assert sent.message == "hello Lee" and sent.id > 0 and sent.chat_id == lee.id


def test_save_update_state_writes_state_and_entities_to_the_file(
    sandbox: SandboxThread, phones: Phones, tmp_path: Path
) -> None:
    control = sandbox.control
    phone = f"+1777{uuid.uuid4().int % 10**7:07d}"
    control.create_user(phone, "Kim")
    lee = control.create_user(f"+1778{uuid.uuid4().int % 10**7:07d}", "Lee", username="lee_saved")
    path = tmp_path / "kim.session"

    async def run() -> None:
        client = new_client(sandbox, SQLiteSession(str(path)))
        phones.clients.append(client)
        await client.start(phone=phone, code_callback=lambda: control.last_login_code(phone))
        await client.get_input_entity("lee_saved")  # an entity the session should keep
        await telethon_compat.save_update_state(client)
        client.session.save()

    phones.run(run())
    # Read by another session object while the client still runs, as after a crash.
    saved = SQLiteSession(str(path))
    try:
        assert saved.get_update_state(0) is not None
        assert utils.get_peer_id(saved.get_input_entity("lee_saved")) == lee.id
    finally:
        saved.close()


def test_catch_up_channels_fetches_posts_missed_while_disconnected(
    sandbox: SandboxThread, phones: Phones
) -> None:
    control = sandbox.control
    client, kim = phones.user("Kim")
    channel = control.create_channel("Missed news", username=f"missed{uuid.uuid4().hex[:8]}")
    control.add_member(channel.id, kim.id)
    seen: list[str] = []

    async def catch_up() -> int:
        arrived = asyncio.Event()

        async def on_post(event: events.NewMessage.Event) -> None:
            seen.append(event.raw_text)
            arrived.set()

        client.add_event_handler(on_post, events.NewMessage())
        await client.get_dialogs()  # the client learns the channel and its pts
        control.post(channel.id, "seen live")
        await asyncio.wait_for(arrived.wait(), CALL_TIMEOUT)
        await client.disconnect()
        control.post(channel.id, "posted while away")
        arrived.clear()
        await client.connect()
        asked = control.calls(DIFFERENCE)[DIFFERENCE]
        marked = telethon_compat.catch_up_channels(client)
        await client.catch_up()
        await asyncio.wait_for(arrived.wait(), CALL_TIMEOUT)
        assert control.calls(DIFFERENCE)[DIFFERENCE] > asked  # the channel's own difference
        return marked

    assert phones.run(catch_up(), timeout=3 * CALL_TIMEOUT) == 1
    assert seen[-1] == "posted while away"


def test_forget_flood_wait_frees_the_other_chats_of_a_bot(
    sandbox: SandboxThread, phones: Phones
) -> None:
    control = sandbox.control
    bot = control.create_bot(f"flood{uuid.uuid4().hex[:8]}_bot")
    _, kim = phones.user("Kim")
    _, lee = phones.user("Lee")
    control.flood_chat(bot.id, kim.id, seconds=60)
    sends = "messages.sendMessage"

    async def run() -> tuple[int, types.Message]:
        client = new_client(sandbox, flood_sleep_threshold=0)
        phones.clients.append(client)
        await client.start(bot_token=bot.token)
        to_kim = functions.messages.SendMessageRequest(peer=kim.id, message="hi Kim")
        with pytest.raises(tg_errors.FloodWaitError) as flooded:
            await client(to_kim)
        # Telethon now holds every sendMessage back, Lee's too, without asking Telegram.
        asked = control.calls(sends)[sends]
        with pytest.raises(tg_errors.FloodWaitError):
            await client.send_message(lee.id, "hi Lee")
        held = control.calls(sends)[sends] - asked
        telethon_compat.forget_flood_wait(client, flooded.value.request)
        return held, await client.send_message(lee.id, "hi Lee")

    held, sent = phones.run(run())
    assert held == 0
    assert sent.message == "hi Lee" and control.inbox(lee.id, bot.id)[-1].text == "hi Lee"
