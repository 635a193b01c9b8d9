"""Channels and history with unmodified Telethon: resolve, join, leave, paginate, dialogs."""

from __future__ import annotations

import pytest
from telethon import errors, functions, types, utils

from sandbox import Sandbox
from tests.sandbox.conftest import Clients

POSTS = 250


@pytest.fixture
def news(sandbox: Sandbox) -> int:
    """A public channel @news with POSTS posts ("post 1" .. "post 250")."""
    channel = sandbox.control.create_channel("News", username="news")
    for i in range(1, POSTS + 1):
        sandbox.control.post(channel.id, f"post {i}")
    return channel.id


async def test_resolve_and_join_a_public_channel(clients: Clients, news: int) -> None:
    client, account = await clients.user()
    entity = await client.get_entity("news")
    assert isinstance(entity, types.Channel)
    assert entity.id == news and entity.broadcast and entity.left
    await client(functions.channels.JoinChannelRequest(entity))
    assert account.id in clients.sandbox.control.channel(news).members
    full = await client(functions.channels.GetFullChannelRequest(entity))
    assert full.full_chat.pts == POSTS + 1  # pts starts at 1
    assert full.chats[0].left is False
    await client(functions.channels.LeaveChannelRequest(entity))
    assert account.id not in clients.sandbox.control.channel(news).members
    with pytest.raises(errors.UserNotParticipantError):
        await client(functions.channels.LeaveChannelRequest(entity))


async def test_unknown_username(clients: Clients) -> None:
    client, _ = await clients.user()
    with pytest.raises(errors.UsernameNotOccupiedError):
        await client(functions.contacts.ResolveUsernameRequest("nobody_here"))


async def test_private_channel_needs_membership(clients: Clients, sandbox: Sandbox) -> None:
    client, account = await clients.user()
    secret = sandbox.control.create_channel("Secret")
    sandbox.control.post(secret.id, "hidden")
    peer = types.InputPeerChannel(secret.id, secret.access_hash)
    with pytest.raises(errors.ChannelPrivateError):
        await client.get_messages(peer, limit=1)
    with pytest.raises(errors.ChannelPrivateError):
        await client(functions.channels.JoinChannelRequest(peer))
    sandbox.control.add_member(secret.id, account.id)
    [message] = await client.get_messages(peer, limit=1)
    assert message.text == "hidden"


async def test_wrong_access_hash_is_refused(clients: Clients, news: int) -> None:
    client, _ = await clients.user()
    with pytest.raises(errors.ChannelInvalidError):
        await client(functions.channels.GetChannelsRequest([types.InputChannel(news, 12345)]))


async def test_history_pagination(clients: Clients, news: int) -> None:
    client, _ = await clients.user()
    channel = await client.get_entity("news")

    everything = [m.id async for m in client.iter_messages(channel)]
    assert everything == list(range(POSTS, 0, -1))

    page = await client.get_messages(channel, limit=10)
    assert [m.id for m in page] == list(range(POSTS, POSTS - 10, -1))
    assert page.total == POSTS

    older = await client.get_messages(channel, limit=10, offset_id=100)
    assert [m.id for m in older] == list(range(99, 89, -1))

    newer = await client.get_messages(channel, limit=5, min_id=240)
    assert [m.id for m in newer] == [250, 249, 248, 247, 246]

    window = await client.get_messages(channel, limit=100, min_id=10, max_id=15)
    assert [m.id for m in window] == [14, 13, 12, 11]

    oldest_first = [m.id async for m in client.iter_messages(channel, reverse=True, limit=30)]
    assert oldest_first == list(range(1, 31))

    after = [m.id async for m in client.iter_messages(channel, reverse=True, min_id=200)]
    assert after == list(range(201, POSTS + 1))

    shifted = await client(
        functions.messages.GetHistoryRequest(
            peer=channel,
            offset_id=50,
            offset_date=None,
            add_offset=-5,
            limit=10,
            max_id=0,
            min_id=0,
            hash=0,
        )
    )
    assert [m.id for m in shifted.messages] == list(range(54, 44, -1))

    by_id = await client.get_messages(channel, ids=[1, 125, 9999])
    assert by_id[0].text == "post 1" and by_id[1].text == "post 125" and by_id[2] is None


async def test_private_chat_history_and_dialogs(clients: Clients, news: int) -> None:
    client, account = await clients.user()
    bot = clients.sandbox.control.create_bot("dialog_bot")
    await client(functions.channels.JoinChannelRequest(await client.get_entity("news")))
    for i in range(1, 31):
        clients.sandbox.control.send_message(bot.id, account.id, f"hello {i}")
    chat = await client.get_entity("dialog_bot")
    history = [m.text async for m in client.iter_messages(chat)]
    assert history == [f"hello {i}" for i in range(30, 0, -1)]
    mine = await client.get_messages(chat, ids=[history and 1])
    assert mine[0].text == "hello 1" and mine[0].sender_id == bot.id

    dialogs = await client.get_dialogs()
    assert {d.id for d in dialogs} == {bot.id, -1000000000000 - news}
    assert dialogs[0].message.text in ("hello 30", f"post {POSTS}")
    limited = await client.get_dialogs(limit=1)
    assert len(limited) == 1 and limited.total == 2


async def test_bots_cannot_read_history(clients: Clients, news: int) -> None:
    client, _ = await clients.bot()
    channel = await client.get_entity("news")
    with pytest.raises(errors.BotMethodInvalidError):
        await client.get_messages(channel, limit=1)


async def test_join_a_private_channel_by_invite_link(clients: Clients, sandbox: Sandbox) -> None:
    client, account = await clients.user()
    secret = sandbox.control.create_channel("Invite only")
    sandbox.control.post(secret.id, "welcome")
    invite_hash, is_invite = utils.parse_username(secret.invite_link)
    assert is_invite
    preview = await client(functions.messages.CheckChatInviteRequest(invite_hash))
    assert isinstance(preview, types.ChatInvite) and preview.title == "Invite only"
    joined = await client(functions.messages.ImportChatInviteRequest(invite_hash))
    assert (
        joined.chats[0].id == secret.id and account.id in sandbox.control.channel(secret.id).members
    )
    again = await client(functions.messages.CheckChatInviteRequest(invite_hash))
    assert isinstance(again, types.ChatInviteAlready)
    [message] = await client.get_messages(again.chat, limit=1)
    assert message.text == "welcome"
    with pytest.raises(errors.UserAlreadyParticipantError):
        await client(functions.messages.ImportChatInviteRequest(invite_hash))
    with pytest.raises(errors.InviteHashInvalidError):
        await client(functions.messages.CheckChatInviteRequest("nope"))
