"""Live updates and gap recovery with unmodified Telethon."""

from __future__ import annotations

import asyncio

import pytest
from telethon import Button, errors, events, functions, types

from sandbox import Sandbox
from sandbox.control import Control
from tests.sandbox.conftest import Clients, next_item, wait_for


def collect(client, builder=None) -> asyncio.Queue:
    """A queue that receives every NewMessage event (or ``builder``'s events) of a client."""
    queue: asyncio.Queue = asyncio.Queue()

    async def handler(event) -> None:
        await queue.put(event)

    client.add_event_handler(handler, builder or events.NewMessage())
    return queue


def calls(control: Control, method: str) -> int:
    """How often the sandbox ran ``method`` so far."""
    return control.calls(method)[method]


async def drain(queue: asyncio.Queue, count: int) -> list[str]:
    """The texts of the next ``count`` events."""
    return [(await next_item(queue)).raw_text for _ in range(count)]


async def joined_reader(clients: Clients, username: str = "feed"):
    """A logged-in user that joined public channel @<username>: (client, account, channel)."""
    channel = clients.sandbox.control.create_channel("Feed", username=username)
    client, account = await clients.user("Reader")
    await client(functions.channels.JoinChannelRequest(await client.get_entity(username)))
    return client, account, channel


async def test_channel_post_fires_new_message(clients: Clients, sandbox: Sandbox) -> None:
    client, _, channel = await joined_reader(clients)
    bot, bot_account = await clients.bot()
    sandbox.control.add_member(channel.id, bot_account.id, admin=True)
    user_events, bot_events = collect(client), collect(bot)
    sandbox.control.post(channel.id, "breaking news")
    for queue in (user_events, bot_events):
        event = await next_item(queue)
        assert event.raw_text == "breaking news"
        assert event.chat_id == -1000000000000 - channel.id
        assert event.message.post


async def test_admin_post_through_sendmessage_reaches_members(clients: Clients) -> None:
    reader, _, channel = await joined_reader(clients)
    admin, admin_account = await clients.user("Admin")
    clients.sandbox.control.add_member(channel.id, admin_account.id, admin=True)
    queue = collect(reader)
    sent = await admin.send_message(await admin.get_entity("feed"), "from the admin")
    assert sent.id == 1
    assert (await next_item(queue)).raw_text == "from the admin"


async def test_user_message_reaches_bot_and_reply_comes_back(clients: Clients) -> None:
    bot, bot_account = await clients.bot("echo_bot")

    @bot.on(events.NewMessage(pattern="/start"))
    async def start(event) -> None:
        async with event.client.action(event.chat_id, "typing"):  # messages.setTyping
            await event.reply("hello " + (await event.get_sender()).first_name)

    user, account = await clients.user("Alice")
    replies = collect(user, events.NewMessage(incoming=True))
    sent = await user.send_message("echo_bot", "/start")
    reply = await next_item(replies)
    assert reply.raw_text == "hello Alice"
    assert reply.sender_id == bot_account.id
    # The bot replied to its copy of /start; the user sees the reply point at its own copy.
    assert reply.message.reply_to_msg_id == sent.id
    assert await user.send_read_acknowledge("echo_bot", reply.message)
    assert [m.text for m in clients.sandbox.control.inbox(bot_account.id)] == ["/start"]
    assert [m.text for m in clients.sandbox.control.inbox(account.id)] == ["hello Alice"]


async def test_inline_button_callback_round_trip(clients: Clients) -> None:
    bot, _bot_account = await clients.bot("button_bot")
    presses: asyncio.Queue = asyncio.Queue()

    @bot.on(events.CallbackQuery())
    async def pressed(event) -> None:
        await presses.put(event.data)
        await event.answer("you chose " + event.data.decode())

    user, account = await clients.user()
    await user.get_entity("button_bot")  # cache the bot before it writes first
    await bot.send_message(
        account.id, "pick one", buttons=[[Button.inline("yes"), Button.inline("no")]]
    )
    [message] = await user.get_messages("button_bot", limit=1)
    assert message.buttons is not None and message.buttons[0][1].text == "no"
    answer = await message.click(1)
    assert answer.message == "you chose no"
    assert await next_item(presses) == b"no"


async def test_live_updates_go_to_the_newest_session_only(clients: Clients) -> None:
    client, _, channel = await joined_reader(clients)
    queue = collect(client)
    await client.disconnect()
    await client.connect()
    clients.sandbox.control.post(channel.id, "once")
    assert await drain(queue, 1) == ["once"]
    clients.sandbox.control.post(channel.id, "twice")
    assert await drain(queue, 1) == ["twice"]
    assert queue.empty()


async def test_channel_gap_is_recovered(clients: Clients) -> None:
    client, _, channel = await joined_reader(clients)
    queue = collect(client)
    control = clients.sandbox.control
    control.post(channel.id, "first")
    assert await drain(queue, 1) == ["first"]
    await client.disconnect()
    control.post(channel.id, "missed 1")
    control.post(channel.id, "missed 2")
    await client.connect()
    # The next live post has pts 4 while the client knows 1: a gap, so Telethon asks
    # updates.getChannelDifference and delivers what it missed, then the new post.
    control.post(channel.id, "after the gap")
    assert await drain(queue, 3) == ["missed 1", "missed 2", "after the gap"]


async def test_channel_difference_pages_until_final(clients: Clients) -> None:
    client, _, channel = await joined_reader(clients)
    queue = collect(client)
    control = clients.sandbox.control
    control.post(channel.id, "seen")
    await drain(queue, 1)
    await client.disconnect()
    for i in range(150):  # more than the 100 a user client asks per getChannelDifference
        control.post(channel.id, f"missed {i}")
    await client.connect()
    control.post(channel.id, "last")
    texts = await drain(queue, 151)
    assert texts == [f"missed {i}" for i in range(150)] + ["last"]
    assert calls(control, "updates.getChannelDifference") >= 2


async def test_channel_difference_too_long_skips_ahead(clients: Clients) -> None:
    client, _, channel = await joined_reader(clients)
    queue = collect(client)
    control = clients.sandbox.control
    control.set_limits(channel_difference_too_long=5)
    control.post(channel.id, "seen")
    await drain(queue, 1)
    await client.disconnect()
    for i in range(10):
        control.post(channel.id, f"lost {i}")
    await client.connect()
    before = calls(control, "updates.getChannelDifference")
    control.post(channel.id, "gap trigger")
    # channelDifferenceTooLong: Telethon jumps to the new pts without replaying.
    await wait_for(
        lambda: calls(control, "updates.getChannelDifference") > before, "getChannelDifference"
    )
    # Posts racing that difference are skipped by the client while it fetches it; a
    # catch_up (getDifference -> updateChannelTooLong -> getChannelDifference) replays them.
    control.post(channel.id, "in sync 1")
    control.post(channel.id, "in sync 2")
    await client.catch_up()
    assert await drain(queue, 2) == ["in sync 1", "in sync 2"]


async def test_account_gap_is_recovered_with_catch_up(clients: Clients) -> None:
    bot, bot_account = await clients.bot()
    queue = collect(bot)
    _user, account = await clients.user()
    control = clients.sandbox.control
    control.set_limits(difference_slice=2)
    await bot.disconnect()
    for i in range(5):
        control.send_message(account.id, bot_account.id, f"while away {i}")
    await bot.connect()
    await bot.catch_up()
    # Five messages over slices of two: differenceSlice, differenceSlice, difference.
    assert await drain(queue, 5) == [f"while away {i}" for i in range(5)]


async def test_account_gap_found_by_the_next_update(clients: Clients) -> None:
    bot, bot_account = await clients.bot()
    queue = collect(bot)
    user, _ = await clients.user()
    await user.send_message(bot_account.username, "one")
    assert await drain(queue, 1) == ["one"]
    await bot.disconnect()
    await user.send_message(bot_account.username, "two")
    await bot.connect()
    await user.send_message(bot_account.username, "three")
    assert await drain(queue, 2) == ["two", "three"]


async def test_difference_too_long_resets_the_state(clients: Clients) -> None:
    bot, bot_account = await clients.bot()
    queue = collect(bot)
    control = clients.sandbox.control
    _user, account = await clients.user()
    control.set_limits(difference_too_long=3)
    await bot.disconnect()
    for i in range(6):
        control.send_message(account.id, bot_account.id, f"dropped {i}")
    await bot.connect()
    before = calls(control, "updates.getDifference")
    await bot.catch_up()
    await wait_for(lambda: calls(control, "updates.getDifference") > before, "getDifference")
    # Messages racing that difference are skipped by the client; catch_up replays them.
    control.send_message(account.id, bot_account.id, "fresh 1")
    control.send_message(account.id, bot_account.id, "fresh 2")
    await bot.catch_up()
    assert await drain(queue, 2) == ["fresh 1", "fresh 2"]


async def test_control_api_presses_a_button_for_a_user(clients: Clients) -> None:
    bot, bot_account = await clients.bot("press_bot")

    @bot.on(events.CallbackQuery(data=b"go"))
    async def pressed(event) -> None:
        await event.answer("went", alert=True)

    control = clients.sandbox.control
    user = control.create_user("+15550123456", "Clicker")
    control.send_message(bot_account.id, user.id, "ready?", buttons=[["go"]])
    [offer] = control.inbox(user.id)
    assert offer.buttons[0][0].data == "go"
    answer = await control.press(user.id, "press_bot", offer.id, "go")
    assert answer.message == "went" and answer.alert


async def test_no_pushes_to_a_client_that_asked_for_none(clients: Clients) -> None:
    control = clients.sandbox.control
    account = control.create_user("+15550424242", "Quiet")
    quiet = clients.raw(receive_updates=False)  # every query wrapped in invokeWithoutUpdates
    await clients.login(quiet, "+15550424242")
    assert (await quiet.get_me()).id == account.id
    assert control.online(account.id) is False
    _, loud = await clients.user("Loud")
    assert control.online(loud.id) is True


async def test_post_edits_and_deletions_fire_events(clients: Clients) -> None:
    client, _, channel = await joined_reader(clients)
    control = clients.sandbox.control
    edits = collect(client, events.MessageEdited())
    deletions = collect(client, events.MessageDeleted())
    first = control.post(channel.id, "draft")
    second = control.post(channel.id, "doomed")
    control.edit_post(channel.id, first.id, "final")
    edited = await next_item(edits)
    assert (edited.id, edited.raw_text) == (first.id, "final")
    assert edited.message.edit_date is not None
    assert control.delete_posts(channel.id, [second.id, 999]) == 1
    deleted = await next_item(deletions)
    assert deleted.deleted_ids == [second.id]
    history = await client.get_messages("feed", limit=10)
    assert [(m.id, m.text) for m in history] == [(first.id, "final")]


async def test_admin_edits_and_deletes_through_telethon(clients: Clients) -> None:
    reader, _, channel = await joined_reader(clients)
    admin, admin_account = await clients.user("Admin")
    clients.sandbox.control.add_member(channel.id, admin_account.id, admin=True)
    edits = collect(reader, events.MessageEdited())
    deletions = collect(reader, events.MessageDeleted())
    feed = await admin.get_entity("feed")
    sent = await admin.send_message(feed, "typo")
    fixed = await admin.edit_message(feed, sent.id, "fixed")
    assert fixed.text == "fixed"
    assert (await next_item(edits)).raw_text == "fixed"
    await admin.delete_messages(feed, [sent.id])
    assert (await next_item(deletions)).deleted_ids == [sent.id]
    with pytest.raises(errors.ChatAdminRequiredError):
        await reader.edit_message(await reader.get_entity("feed"), sent.id, "mine now")


async def test_bot_edits_its_private_message(clients: Clients) -> None:
    bot, _ = await clients.bot("editing_bot")
    user, account = await clients.user()
    edits = collect(user, events.MessageEdited())
    await user.get_entity("editing_bot")
    offer = await bot.send_message(account.id, "step 1", buttons=[[Button.inline("next")]])
    await bot.edit_message(account.id, offer.id, "step 2", buttons=[[Button.inline("done")]])
    edited = await next_item(edits)
    assert edited.raw_text == "step 2"
    assert edited.message.buttons[0][0].text == "done"
    [mine] = clients.sandbox.control.inbox(account.id)
    assert (mine.text, mine.buttons[0][0].data) == ("step 2", "done")
    with pytest.raises(errors.MessageAuthorRequiredError):
        await user.edit_message("editing_bot", mine.id, "not yours")


async def test_edits_and_deletions_missed_offline_come_with_the_difference(
    clients: Clients,
) -> None:
    client, _, channel = await joined_reader(clients)
    control = clients.sandbox.control
    queue = collect(client)
    kept = control.post(channel.id, "kept")
    await drain(queue, 1)
    await client.disconnect()
    control.edit_post(channel.id, kept.id, "kept, edited")
    gone = control.post(channel.id, "gone")
    control.post(channel.id, "stays")
    control.delete_posts(channel.id, [gone.id])
    await client.connect()
    control.post(channel.id, "live again")
    # The deleted post is not replayed; the new ones arrive in order.
    assert await drain(queue, 2) == ["stays", "live again"]
    [latest_kept] = await client.get_messages("feed", ids=[kept.id])
    assert latest_kept.text == "kept, edited"


async def test_private_deletions(clients: Clients) -> None:
    bot, bot_account = await clients.bot("deleting_bot")
    user, account = await clients.user()
    deletions = collect(user, events.MessageDeleted())
    await user.get_entity("deleting_bot")
    control = clients.sandbox.control
    sent = await bot.send_message(account.id, "self-destruct")
    [copy] = control.inbox(account.id)
    await bot.delete_messages(account.id, [sent.id])  # revoke: both copies go
    assert (await next_item(deletions)).deleted_ids == [copy.id]
    assert control.inbox(account.id) == [] and control.outbox(bot_account.id) == []
    mine = await user.send_message("deleting_bot", "only for me")
    await user.delete_messages("deleting_bot", [mine.id], revoke=False)
    assert control.outbox(account.id) == []
    assert [m.text for m in control.inbox(bot_account.id)] == ["only for me"]
    assert (
        control.delete_messages(bot_account.id, [m.id for m in control.inbox(bot_account.id)]) == 1
    )


async def test_account_difference_replays_messages_as_they_are_now(clients: Clients) -> None:
    bot, _ = await clients.bot("offline_bot")
    queue = collect(bot)
    user, _ = await clients.user()
    await bot.disconnect()
    first = await user.send_message("offline_bot", "first draft")
    await user.edit_message("offline_bot", first.id, "first, edited")
    second = await user.send_message("offline_bot", "regretted")
    await user.delete_messages("offline_bot", [second.id], revoke=True)
    await bot.connect()
    await bot.catch_up()
    assert await drain(queue, 1) == ["first, edited"]
    await user.send_message("offline_bot", "live")
    assert await drain(queue, 1) == ["live"]


async def test_difference_requests_directly(clients: Clients) -> None:
    client, account, channel = await joined_reader(clients)
    control = clients.sandbox.control
    for i in range(25):
        control.post(channel.id, f"p{i}")
    feed = await client.get_input_entity("feed")
    empty = types.ChannelMessagesFilterEmpty()
    page = await client(functions.updates.GetChannelDifferenceRequest(feed, empty, 1, 10))
    assert isinstance(page, types.updates.ChannelDifference) and page.final is False
    assert [m.message for m in page.new_messages] == [f"p{i}" for i in range(10)]
    rest = await client(functions.updates.GetChannelDifferenceRequest(feed, empty, page.pts, 100))
    assert rest.final and len(rest.new_messages) == 15 and rest.pts == control.channel("feed").pts
    done = await client(functions.updates.GetChannelDifferenceRequest(feed, empty, rest.pts, 100))
    assert isinstance(done, types.updates.ChannelDifferenceEmpty) and done.final

    state = await client(functions.updates.GetStateRequest())
    ahead = await client(
        functions.updates.GetDifferenceRequest(pts=state.pts + 100, date=state.date, qts=0)
    )
    assert isinstance(ahead, types.updates.DifferenceTooLong) and ahead.pts == state.pts
    same = await client(functions.updates.GetDifferenceRequest(state.pts, state.date, 0))
    assert isinstance(same, types.updates.DifferenceEmpty)
    assert account.id in control.channel("feed").members
