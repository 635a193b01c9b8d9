"""What a bot meets in the sandbox, with unmodified Telethon: inline keyboards, its own
edits, callbacks pressed by users, and Telegram's sending limits (FLOOD_WAIT)."""

from __future__ import annotations

import asyncio

import pytest
from telethon import Button, errors, events

from sandbox.backend import RpcError
from tests.sandbox.conftest import Clients, next_item
from tests.sandbox.test_updates import collect


async def bot_and_user(clients: Clients, name: str):
    """A bot client, a user client that has seen the bot, and their accounts."""
    bot, bot_account = await clients.bot(name)
    user, account = await clients.user("Pat")
    await user.get_entity(name)
    return bot, bot_account, user, account


async def same_bot(clients: Clients, bot_id: int):
    """Another client logged in as the same bot, with no flood wait remembered, that
    raises every FLOOD_WAIT instead of sleeping through it."""
    client = clients.raw()
    await client.start(bot_token=clients.sandbox.control.bot_token(bot_id))
    client.flood_sleep_threshold = 0
    return client


async def test_keyboard_edit_and_click_as_the_user_sees_them(clients: Clients) -> None:
    bot, bot_account, user, account = await bot_and_user(clients, "menu_bot")
    control = clients.sandbox.control
    answered: asyncio.Queue = asyncio.Queue()

    @bot.on(events.CallbackQuery())
    async def pressed(event) -> None:
        await event.answer("noted")  # first: Telethon's edit() answers an unanswered query
        await event.edit("you picked " + event.data.decode(), buttons=[Button.inline("again")])
        await answered.put(event.data)

    edits = collect(user, events.MessageEdited())
    incoming = collect(user, events.NewMessage(incoming=True))
    await user.send_message("menu_bot", "/menu")
    assert [m.text for m in control.inbox(bot_account.id)] == ["/menu"]
    await bot.send_message(account.id, "choose", buttons=[[Button.inline("Red", b"r")]])
    offer = (await next_item(incoming)).message
    assert offer.buttons[0][0].text == "Red" and offer.buttons[0][0].data == b"r"
    answer = await offer.click(0)  # messages.getBotCallbackAnswer, as a person's tap
    assert answer.message == "noted"
    assert await next_item(answered) == b"r"
    edited = await next_item(edits)  # updateEditMessage pushed to the user
    assert edited.raw_text == "you picked r" and edited.message.buttons[0][0].text == "again"
    [mine_in, theirs] = control.chat(account.id, bot_account.id)
    assert (mine_in.text, mine_in.out) == ("/menu", True)
    assert (theirs.text, theirs.out, theirs.edit_date is not None) == ("you picked r", False, True)
    assert [[b.text for b in row] for row in theirs.buttons] == [["again"]]
    # The control API presses by label too, and gets the bot's answer.
    pressed_by_label = await control.press(account.id, "menu_bot", theirs.id, text="again")
    assert pressed_by_label.message == "noted"
    with pytest.raises(RpcError, match="BUTTON_DATA_INVALID"):
        await control.press(account.id, "menu_bot", theirs.id, text="missing")


async def test_unanswered_callback_times_out(clients: Clients) -> None:
    bot, _, user, account = await bot_and_user(clients, "mute_bot")
    control = clients.sandbox.control
    control.set_limits(callback_timeout=0.2)
    seen: asyncio.Queue = asyncio.Queue()

    @bot.on(events.CallbackQuery())
    async def ignore(event) -> None:
        await seen.put(event.query.msg_id)

    sent = await bot.send_message(account.id, "press me", buttons=[Button.inline("x")])
    [offer] = await user.get_messages("mute_bot", limit=1)
    # BOT_RESPONSE_TIMEOUT, which Telethon's click() turns into None.
    assert await offer.click(0) is None
    assert await next_item(seen) == sent.id  # the bot got it, with its own message id
    with pytest.raises(RpcError, match="BOT_RESPONSE_TIMEOUT"):
        await control.press(account.id, "mute_bot", offer.id, data="x")


async def test_private_chat_limit_answers_flood_wait_and_the_log_shows_it(
    clients: Clients,
) -> None:
    bot, bot_account, _user, account = await bot_and_user(clients, "chatty_bot")
    control = clients.sandbox.control
    bot.flood_sleep_threshold = 0  # see every FLOOD_WAIT instead of sleeping through it
    limits = control.set_limits()
    assert (limits.bot_private_per_s, limits.bot_per_s, limits.bot_channel_per_min) == (1, 30, 20)
    for i in range(int(limits.bot_private_burst)):  # the burst goes through at once
        await bot.send_message(account.id, f"burst {i}")
    with pytest.raises(errors.FloodWaitError) as refused:
        await bot.send_message(account.id, "one too many")
    assert refused.value.seconds == 1
    [log] = control.bot_sends(bot_account.id)
    assert (log.chat_id, log.kind, log.sent, log.refused) == (account.id, "private", 3, 1)
    assert len(log.times) == 3 and log.times == sorted(log.times)
    assert [m.text for m in control.inbox(account.id)] == [f"burst {i}" for i in range(3)]
    # Another chat is not held up by this one.
    _, other = await clients.user("Other")
    await bot.send_message(other.id, "hello")
    assert {s.chat_id: s.sent for s in control.bot_sends("chatty_bot")} == {
        account.id: 3,
        other.id: 1,
    }


async def test_limits_are_configurable_and_can_be_turned_off(clients: Clients) -> None:
    bot, bot_account, _user, account = await bot_and_user(clients, "tuned_bot")
    control = clients.sandbox.control
    bot.flood_sleep_threshold = 0
    control.set_limits(bot_limits=False)
    for i in range(10):
        await bot.send_message(account.id, f"free {i}")
    [log] = control.bot_sends(bot_account.id)  # logged, never refused
    assert (log.sent, log.refused) == (10, 0)
    control.set_limits(bot_limits=True, bot_private_per_s=0.2, bot_private_burst=1)
    control.reset_bot_sends()
    assert control.bot_sends(bot_account.id) == []
    await bot.send_message(account.id, "first")
    # (Telethon then refuses every sendMessage of this client itself for those 5 s.)
    with pytest.raises(errors.FloodWaitError) as refused:
        await bot.send_message(account.id, "second")
    assert refused.value.seconds == 5  # one token every 5 s
    with pytest.raises(ValueError):
        control.set_limits(bot_per_s=0)
    with pytest.raises(TypeError):
        control.set_limits(no_such_limit=1)


async def test_overall_limit_spans_chats(clients: Clients) -> None:
    bot, bot_account = await clients.bot("busy_bot")
    control = clients.sandbox.control
    bot.flood_sleep_threshold = 0
    control.set_limits(bot_per_s=1, bot_burst=4)
    users = [control.create_user(f"+1777000{i:04d}", f"U{i}") for i in range(5)]
    for user in users[:4]:
        await bot.send_message(user.id, "hi")
    with pytest.raises(errors.FloodWaitError):
        await bot.send_message(users[4].id, "hi")
    assert sum(s.sent for s in control.bot_sends(bot_account.id)) == 4


async def test_channel_limit_and_a_forced_flood_on_one_chat(clients: Clients) -> None:
    bot, bot_account, _user, account = await bot_and_user(clients, "poster_bot")
    control = clients.sandbox.control
    bot.flood_sleep_threshold = 0
    channel = control.create_channel("Board", username="board")
    control.add_member(channel.id, bot_account.id, admin=True)
    board = await bot.get_input_entity("board")
    for i in range(3):  # bot_channel_burst
        await bot.send_message(board, f"news {i}")
    with pytest.raises(errors.FloodWaitError) as refused:
        await bot.send_message(board, "news 3")
    assert refused.value.seconds == 3  # 20 per minute: one every 3 s
    [log] = control.bot_sends(bot_account.id, chat="board")
    assert (log.kind, log.sent, log.refused) == ("channel", 3, 1)

    control.flood_chat(bot_account.id, account.id, seconds=30)
    with pytest.raises(errors.FloodWaitError) as forced:
        await bot.send_message(account.id, "held")
    assert 29 <= forced.value.seconds <= 30
    # Telethon now refuses this client's every sendMessage for 30 s by itself; the server
    # holds up only that chat, as another client of the same bot shows.
    twin = await same_bot(clients, bot_account.id)
    _, other = await clients.user("Free")
    await twin.send_message(other.id, "not held")
    with pytest.raises(errors.FloodWaitError):
        await twin.send_message(account.id, "still held")
    control.clear_faults()
    await (await same_bot(clients, bot_account.id)).send_message(account.id, "released")
    assert [m.text for m in control.inbox(account.id)] == ["released"]
    assert [(s.sent, s.refused) for s in control.bot_sends("poster_bot", chat=account.id)] == [
        (1, 2)
    ]
    with pytest.raises(RpcError, match="BOT_INVALID"):
        control.flood_chat(account.id, other.id, seconds=5)


async def test_a_sender_that_honours_flood_waits_gets_everything_through(
    clients: Clients,
) -> None:
    bot, bot_account, _user, account = await bot_and_user(clients, "patient_bot")
    control = clients.sandbox.control
    control.set_limits(bot_private_per_s=20, bot_private_burst=2)
    bot.flood_sleep_threshold = 60  # Telethon sleeps through FLOOD_WAIT and retries
    for i in range(6):
        await bot.send_message(account.id, f"m{i}")
    [log] = control.bot_sends(bot_account.id, chat=account.id)
    assert log.sent == 6 and log.refused >= 1
    assert [m.text for m in control.inbox(account.id)] == [f"m{i}" for i in range(6)]


async def test_a_user_sends_a_command_through_the_control_api(clients: Clients) -> None:
    bot, bot_account = await clients.bot("cmd_bot")
    control = clients.sandbox.control
    commands = collect(bot, events.NewMessage(pattern="/start"))
    user = control.create_user("+17770009999", "Remote")
    control.send_message(user.id, "cmd_bot", "/start now")
    event = await next_item(commands)
    assert event.raw_text == "/start now" and event.sender_id == user.id
    await event.reply("started", buttons=[Button.inline("Go", b"go")])
    [reply] = control.inbox(user.id, "cmd_bot")
    assert reply.text == "started" and reply.buttons[0][0].data == "go"
    assert reply.sender_id == bot_account.id
