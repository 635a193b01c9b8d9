"""What a channel monitor meets in the sandbox, with unmodified Telethon: the membership
cap, channels whose live updates never come, too-long channel gaps, and posting at a high
rate from the control API."""

from __future__ import annotations

import asyncio

import pytest
from telethon import errors, events, functions, types

from actors.convert import media_kind
from sandbox.backend import RpcError
from sandbox.media import MEDIA_KINDS
from tests.sandbox.conftest import Clients, next_item, wait_for
from tests.sandbox.test_updates import calls, collect, drain


async def join(client, *usernames: str) -> None:
    """Join public channels with channels.joinChannel, as a person would."""
    for name in usernames:
        await client(functions.channels.JoinChannelRequest(await client.get_entity(name)))


async def member_of_new_channels(clients: Clients, prefix: str, count: int):
    """A logged-in user, the queue of its NewMessage events, and ``count`` new public
    channels @<prefix>0.. it is a member of."""
    control = clients.sandbox.control
    client, account = await clients.user()
    channels = [
        control.create_channel(f"{prefix} {i}", username=f"{prefix}{i}") for i in range(count)
    ]
    for channel in channels:
        control.add_member(channel.id, account.id)
    return client, collect(client), channels


async def test_joining_past_the_channel_cap_is_channels_too_much(clients: Clients) -> None:
    control = clients.sandbox.control
    assert control.set_limits().channels_per_user == 500  # Telegram's default
    control.set_limits(channels_per_user=3)
    client, account = await clients.user()
    for i in range(4):
        control.create_channel(f"Open {i}", username=f"open{i}")
    hidden = control.create_channel("Hidden")
    await join(client, "open0", "open1", "open2")
    # Joining a channel one is already in changes nothing and is allowed at the cap.
    await join(client, "open0")
    with pytest.raises(errors.ChannelsTooMuchError):
        await join(client, "open3")
    invite_hash = hidden.invite_link.rsplit("+", 1)[1]
    with pytest.raises(errors.ChannelsTooMuchError):
        await client(functions.messages.ImportChatInviteRequest(invite_hash))
    assert len(control.memberships(account.id)) == 3
    # Leaving one makes room again.
    await client(functions.channels.LeaveChannelRequest(await client.get_entity("open0")))
    await client(functions.messages.ImportChatInviteRequest(invite_hash))
    assert sorted(control.memberships(account.id)) == sorted(
        control.channel(ref).id for ref in ("open1", "open2", hidden.id)
    )


async def test_withheld_channel_is_stored_but_never_pushed(clients: Clients) -> None:
    control = clients.sandbox.control
    client, _ = await clients.user()
    quiet = control.create_channel("Quiet", username="quiet")
    loud = control.create_channel("Loud", username="loud")
    await join(client, "quiet", "loud")
    queue = collect(client)
    control.post(quiet.id, "before")  # the client now knows the channel's pts
    assert await drain(queue, 1) == ["before"]
    assert control.withhold_updates("quiet") is True
    control.post(quiet.id, "withheld 1")
    control.post(quiet.id, "withheld 2")
    control.post(loud.id, "live")
    assert await drain(queue, 1) == ["live"]
    # Even a full catch-up does not point the client at the withheld channel...
    await client.catch_up()
    control.post(loud.id, "live again")
    assert await drain(queue, 1) == ["live again"]
    assert queue.empty()
    # ...but its posts are there for whoever asks: history and the channel's difference.
    entity = await client.get_input_entity("quiet")
    assert [m.text for m in await client.get_messages(entity, limit=5)] == [
        "withheld 2",
        "withheld 1",
        "before",
    ]
    diff = await client(
        functions.updates.GetChannelDifferenceRequest(
            entity, types.ChannelMessagesFilterEmpty(), 2, 100
        )
    )
    assert [m.message for m in diff.new_messages] == ["withheld 1", "withheld 2"]
    # Released: the next post shows a gap, which Telethon fills from the difference.
    assert control.withhold_updates("quiet", on=False) is False
    control.post(quiet.id, "released")
    assert await drain(queue, 3) == ["withheld 1", "withheld 2", "released"]


async def test_withheld_edits_and_deletions_are_not_pushed(clients: Clients) -> None:
    control = clients.sandbox.control
    client, _ = await clients.user()
    channel = control.create_channel("Quiet", username="quiet_edits")
    barrier = control.create_channel("Barrier", username="barrier")
    await join(client, "quiet_edits", "barrier")
    edits = collect(client, events.MessageEdited())
    deletions = collect(client, events.MessageDeleted())
    posts = collect(client)
    first = control.post(channel.id, "one")
    second = control.post(channel.id, "two")
    await drain(posts, 2)
    control.withhold_updates(channel.id)
    control.edit_post(channel.id, first.id, "one, edited")
    control.delete_posts(channel.id, [second.id])
    control.post(barrier.id, "barrier")  # pushed after the edit and deletion would be
    assert await drain(posts, 1) == ["barrier"]
    assert edits.empty() and deletions.empty()
    history = await client.get_messages("quiet_edits", limit=5)
    assert [(m.id, m.text) for m in history] == [(first.id, "one, edited")]
    control.clear_faults()  # releases the channel too
    control.post(channel.id, "three")
    assert await drain(posts, 1) == ["three"]


async def test_channel_difference_too_long_gives_no_events_for_the_gap(
    clients: Clients,
) -> None:
    control = clients.sandbox.control
    client, _ = await clients.user()
    channel = control.create_channel("Busy", username="busy")
    await join(client, "busy")
    queue = collect(client)
    control.set_limits(channel_difference_too_long=20)
    control.post(channel.id, "seen")
    assert await drain(queue, 1) == ["seen"]
    await client.disconnect()
    control.post_many(channel.id, count=50, text="lost {n}")
    await client.connect()
    before = calls(control, "updates.getChannelDifference")
    control.post(channel.id, "gap trigger")  # pts 53 where the client knows 2: a gap
    await wait_for(
        lambda: calls(control, "updates.getChannelDifference") > before, "getChannelDifference"
    )
    entity = await client.get_input_entity("busy")
    answer = await client(
        functions.updates.GetChannelDifferenceRequest(
            entity, types.ChannelMessagesFilterEmpty(), 2, 100
        )
    )
    # What Telethon reads from it: the dialog's pts (it jumps there) and the chats.
    assert isinstance(answer, types.updates.ChannelDifferenceTooLong)
    assert answer.dialog.pts == control.channel("busy").pts
    assert answer.dialog.top_message == control.history("busy")[-1].id
    control.post(channel.id, "after the jump")
    # The first event after the jump is the next live post: none of the gap was replayed.
    assert await drain(queue, 1) == ["after the jump"]
    assert queue.empty()


async def test_post_many_in_many_channels_reaches_a_member_in_order(clients: Clients) -> None:
    control = clients.sandbox.control
    _client, queue, channels = await member_of_new_channels(clients, "fast", 5)
    ranges = control.post_many([c.id for c in channels], count=200, text="{channel}:{n}")
    assert [(r.channel_id, r.first_id, r.last_id, r.count) for r in ranges] == [
        (c.id, 1, 200, 200) for c in channels
    ]
    received: dict[int, list[str]] = {c.id: [] for c in channels}
    for _ in range(1000):
        event = await asyncio.wait_for(queue.get(), 10)
        received[event.message.peer_id.channel_id].append(event.raw_text)
    assert received == {c.id: [f"{c.id}:{n}" for n in range(200)] for c in channels}
    assert len(control.history(channels[0].id)) == 200


async def test_post_many_refuses_bad_arguments(clients: Clients) -> None:
    control = clients.sandbox.control
    control.create_channel("Some", username="some")
    with pytest.raises(ValueError):
        control.post_many([], count=1)
    with pytest.raises(ValueError):
        control.post_many("some", count=0)
    with pytest.raises(ValueError):
        control.post_many("some", count=100_001)
    with pytest.raises(RpcError, match="USERNAME_NOT_OCCUPIED"):
        control.post_many("nobody_here", count=1)
    assert control.history("some") == []


async def test_a_posting_stream_runs_in_the_background_until_stopped(clients: Clients) -> None:
    control = clients.sandbox.control
    _client, queue, _channels = await member_of_new_channels(clients, "stream", 2)
    stream = control.start_posting(["stream0", "stream1"], per_second=200, text="s{n}")
    await wait_for(lambda: control.posting_status(stream).posted >= 20, "20 posts")
    status = await control.stop_posting(stream)
    assert status.running is False and status.posted >= 20
    assert sum(r.count for r in status.ranges) == status.posted
    await asyncio.sleep(0.05)  # a stopped stream posts nothing more
    assert control.posting_status(stream).posted == status.posted
    for _ in range(status.posted):
        await asyncio.wait_for(queue.get(), 10)
    counted = control.start_posting("stream0", per_second=1000, count=7)
    await wait_for(lambda: not control.posting_status(counted).running, "stream end")
    assert control.posting_status(counted).posted == 7
    with pytest.raises(ValueError):
        control.posting_status(999)


async def test_call_times_per_account_show_a_clients_rate(clients: Clients) -> None:
    control = clients.sandbox.control
    client, account = await clients.user()
    _other, other = await clients.user()
    for i in range(3):
        control.create_channel(f"Named {i}", username=f"named{i}")
    resolve = "contacts.resolveUsername"
    client.flood_sleep_threshold = 0
    control.flood(resolve, seconds=1, user_id=account.id)  # Telethon forgets waits <= 3 s
    with pytest.raises(errors.FloodWaitError):
        await client(functions.contacts.ResolveUsernameRequest("named0"))
    for i in range(3):
        await client(functions.contacts.ResolveUsernameRequest(f"named{i}"))
    times = control.call_times(account.id, resolve)
    assert len(times) == 4 and times == sorted(times)  # the refused call counts too
    assert control.call_times(other.id, resolve) == []
    with pytest.raises(ValueError):
        control.call_times(account.id, "")


async def test_delayed_channel_updates_arrive_late_and_in_order(clients: Clients) -> None:
    control = clients.sandbox.control
    client, queue, (slow, fast) = await member_of_new_channels(clients, "lag", 2)
    assert control.delay_updates(slow.id, 2.0) == 2.0
    control.post(slow.id, "late 1")
    control.post(slow.id, "late 2")
    control.post(fast.id, "on time")
    assert await drain(queue, 1) == ["on time"]
    # Stored at once: history has the posts whose updates are still on their way.
    assert [m.text for m in await client.get_messages("lag0", limit=2)] == ["late 2", "late 1"]
    assert await drain(queue, 2) == ["late 1", "late 2"]
    control.delay_updates(slow.id, 0)
    control.post(slow.id, "prompt")
    assert await drain(queue, 1) == ["prompt"]
    with pytest.raises(ValueError):
        control.delay_updates(slow.id, -1)


async def test_posts_with_media_views_and_forwards(clients: Clients) -> None:
    control = clients.sandbox.control
    client, queue, (channel,) = await member_of_new_channels(clients, "gallery", 1)
    for kind in MEDIA_KINDS:
        control.post(channel.id, f"a {kind}", media=kind, views=100, forwards=7)
    received = [(await next_item(queue)).message for _ in MEDIA_KINDS]
    # Telethon tells the kinds apart as on Telegram, and so does the session actor's mapping.
    assert [media_kind(m.media) for m in received] == list(MEDIA_KINDS)
    by_kind = dict(zip(MEDIA_KINDS, received, strict=True))
    assert by_kind["photo"].photo is not None and by_kind["voice"].voice is not None
    assert by_kind["video"].video is not None and by_kind["sticker"].sticker is not None
    assert {(m.views, m.forwards) for m in received} == {(100, 7)}
    history = await client.get_messages("gallery0", limit=1)
    assert history[0].sticker is not None and history[0].text == "a sticker"
    assert control.history(channel.id)[0].media == "photo"
    control.post_many(channel.id, count=2, media="document")
    assert [m.media for m in control.history(channel.id)[-2:]] == ["document", "document"]
    with pytest.raises(ValueError):
        control.post(channel.id, "x", media="hologram")
