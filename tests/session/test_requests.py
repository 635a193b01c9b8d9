"""Every request of the session conversation, with its success and its error cases.

One world for the whole module: a sandbox and three session actors hosted in this
process (real actors in real mailboxes, no ZeroMQ; see ``Hosted``): ``bot`` (logged in by
its token), ``user`` (logged in through its session actor by phone code) and ``nobody`` (a
user account configured but never logged in). Carol, a sandbox user with a Telethon
client in this process, is the person they talk to. Each test sets up the sandbox state it
reads (its own channels and chats), so the tests do not depend on their order.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from telethon import TelegramClient, utils
from telethon.sessions import StringSession
from telethon.tl import functions, types

from actors import convert
from protocols import demo, errors
from protocols import session as s
from protocols.base import Message, Request
from protocols.events import BotCommand, CallbackQuery, bot_topic
from runtime.testing import ActorHarness
from sandbox import SandboxThread
from sandbox.control import Account, Channel
from tests.session.conftest import Sessions
from tests.session.support import CALL_TIMEOUT, Hosted, Phones

R = TypeVar("R", bound=Message)
E = TypeVar("E", bound=errors.Error)

SENDER = "client:test"  # the harness's sender, allowed to export by ``user``
BOT = "session:bot"
USER = "session:user"
NOBODY = "session:nobody"
# Generous proactive limits: these tests exercise requests, not the default rationing of
# username resolution and joins (which would make them wait minutes).
RELAXED_LIMITS = (
    "{ resolve = { rate_per_s = 1000.0, burst = 1000 }, "
    "join = { rate_per_s = 1000.0, burst = 1000 }, "
    "send = { rate_per_s = 1000.0, burst = 1000 }, "
    "dialogs = { rate_per_s = 1000.0, burst = 1000 } }"
)

_names = itertools.count(1)


@dataclass
class World:
    """The module's running system and the people in it."""

    sessions: Sessions
    sandbox: SandboxThread
    hosted: Hosted
    bot: s.User
    user: s.User
    user_phone: str
    phones: Phones
    carol: Account
    carol_client: TelegramClient

    def actor(self, target: str) -> ActorHarness:
        return self.hosted.actors[target.removeprefix("session:")]

    def request(self, target: str, body: Request[R], key: str = "") -> R:
        """A request that must succeed; returns its reply."""
        return self.actor(target).request(body, timeout=CALL_TIMEOUT, idempotency_key=key)

    def refused(self, target: str, body: Message, expected: type[E], key: str = "") -> E:
        """A request that must fail; returns its typed error (``expected``)."""
        return self.hosted.refused(target.removeprefix("session:"), body, expected, key)

    def channel(self, public: bool = True, posts: int = 0) -> Channel:
        """A new channel (public: with a username) with ``posts`` posts by its admin."""
        n = next(_names)
        control = self.sandbox.control
        channel = control.create_channel(f"Channel {n}", username=f"chan{n}x" if public else None)
        for i in range(posts):
            control.post(channel.id, f"post {i + 1}")
        return control.channel(channel.id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = SandboxThread().start()
    sessions = Sessions(Path(tmp_path_factory.mktemp("requests")), sandbox=sandbox)
    hosted = Hosted(sessions)
    phones = Phones(sandbox)
    try:
        bot = sessions.add_bot("bot", limits=RELAXED_LIMITS)
        phone, _ = sessions.add_user("user", export_allowed='["client:*"]', limits=RELAXED_LIMITS)
        sessions.add_user("nobody", export_allowed='["bot:*"]')
        for account in ("bot", "user", "nobody"):
            hosted.start(account)
        carol_client, carol = phones.user("Carol", username="carol_requests")
        hosted.wait_state("bot", "authorized")
        hosted.wait_state("nobody", "unauthorized")
        user = hosted.log_in("user", phone)
        yield World(sessions, sandbox, hosted, bot, user, phone, phones, carol, carol_client)
    finally:
        phones.close()
        hosted.stop_all()
        sandbox.stop()


def channel_id(channel: Channel) -> int:
    """The marked id (``-100…``) Switchboard reports for a sandbox channel."""
    return utils.get_peer_id(types.PeerChannel(channel.id))


def key() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


# -- GetMe, GetSessionStatus ---------------------------------------------------------------


def test_get_me_answers_for_a_bot_and_a_user(world: World) -> None:
    me = world.request(BOT, s.GetMe())
    assert isinstance(me, s.Me)
    assert me.user.id == world.bot.id and me.user.bot and me.user.username == world.bot.username

    me = world.request(USER, s.GetMe())
    assert isinstance(me, s.Me)
    assert me.user.id == world.user.id and not me.user.bot
    assert me.user.phone == world.user_phone.lstrip("+")


def test_session_status_reports_the_authorized_account(world: World) -> None:
    status = world.request(USER, s.GetSessionStatus())
    assert isinstance(status, s.SessionStatus)
    assert status.account == "user" and status.state == "authorized" and status.authorized
    assert status.user is not None and status.user.id == world.user.id


def test_unauthorized_session_refuses_get_me_and_history(world: World) -> None:
    status = world.request(NOBODY, s.GetSessionStatus())
    assert isinstance(status, s.SessionStatus)
    assert status.state == "unauthorized" and not status.authorized and status.user is None
    world.refused(NOBODY, s.GetMe(), errors.Unauthorized)
    news = world.channel(posts=2)
    world.refused(NOBODY, s.FetchHistory(peer=news.username or ""), errors.Unauthorized)
    world.refused(NOBODY, s.GetDialogs(), errors.Unauthorized)


def test_unknown_message_type_is_a_bad_request(world: World) -> None:
    error = world.refused(USER, demo.Echo(text="hello?"), errors.BadRequest)
    assert "Echo" in error.message


# -- ResolvePeer --------------------------------------------------------------------------


def test_resolve_a_username_in_every_spelling(world: World) -> None:
    news = world.channel()
    assert news.username
    expected = s.Peer(
        id=channel_id(news),
        kind="channel",
        title=news.title,
        username=news.username,
        broadcast=True,
    )
    for ref in (news.username, f"@{news.username}", f"https://t.me/{news.username}"):
        assert world.request(USER, s.ResolvePeer(peer=ref)) == expected, ref

    peer = world.request(USER, s.ResolvePeer(peer=world.carol.username or ""))
    assert peer == s.Peer(id=world.carol.id, kind="user", title="Carol", username="carol_requests")


def test_resolve_a_known_numeric_id(world: World) -> None:
    news = world.channel()
    first = world.request(USER, s.ResolvePeer(peer=f"t.me/{news.username}"))
    assert isinstance(first, s.Peer)
    # Seen once, the account knows the id: as a number and as a numeric string.
    assert world.request(USER, s.ResolvePeer(peer=first.id)) == first
    assert world.request(USER, s.ResolvePeer(peer=str(first.id))) == first

    bot = world.request(USER, s.ResolvePeer(peer=world.bot.username))
    assert isinstance(bot, s.Peer) and bot.id == world.bot.id and bot.kind == "user"
    assert world.request(USER, s.ResolvePeer(peer=world.bot.id)) == bot


def test_resolve_unknown_or_garbage_is_not_found(world: World) -> None:
    world.refused(USER, s.ResolvePeer(peer="nobody_has_this_name"), errors.NotFound)
    world.refused(USER, s.ResolvePeer(peer="https://t.me/nobody_has_it"), errors.NotFound)
    # An id the account has never seen cannot be resolved (no access hash).
    world.refused(USER, s.ResolvePeer(peer=987654321), errors.NotFound)
    for garbage in ("", "!!!", "hello world", "@"):
        error = world.refused(USER, s.ResolvePeer(peer=garbage), errors.Error)
        assert isinstance(error, (errors.NotFound, errors.BadRequest)), (garbage, error)


def test_a_value_error_of_ours_is_internal_not_not_found(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only Telethon's lookups mean "not found"; a ValueError elsewhere is a bug."""

    def broken(entity: object) -> s.Peer:
        raise ValueError("a bug in our conversion")

    monkeypatch.setattr(convert, "peer", broken)
    error = world.refused(USER, s.ResolvePeer(peer=world.carol.username or ""), errors.Internal)
    assert "ValueError" in error.message
    monkeypatch.undo()
    # Still there afterwards, and an unknown id is still NotFound (PeerNotFound).
    error = world.refused(USER, s.ResolvePeer(peer=987654321), errors.NotFound)
    assert "987654321" in error.message
    assert world.request(USER, s.ResolvePeer(peer=world.carol.username or "")).id == world.carol.id


# -- JoinChannel / LeaveChannel -----------------------------------------------------------


def test_join_and_leave_a_public_channel(world: World) -> None:
    control = world.sandbox.control
    news = world.channel(posts=1)
    expected = s.Peer(
        id=channel_id(news),
        kind="channel",
        title=news.title,
        username=news.username or "",
        broadcast=True,
    )
    joined = world.request(USER, s.JoinChannel(peer=f"@{news.username}"), key=key())
    assert joined == s.Joined(peer=expected)
    assert world.user.id in control.channel(news.id).members

    dialogs = world.request(USER, s.GetDialogs())
    assert isinstance(dialogs, s.Dialogs)
    assert expected.id in [d.peer.id for d in dialogs.dialogs]

    left = world.request(USER, s.LeaveChannel(peer=news.username or ""), key=key())
    assert left == s.Left(peer=expected)
    assert world.user.id not in control.channel(news.id).members
    # Leaving again: Telegram's USER_NOT_PARTICIPANT, typed.
    error = world.refused(USER, s.LeaveChannel(peer=expected.id), errors.Unauthorized)
    assert error.message.startswith("USER_NOT_PARTICIPANT")


def test_join_a_private_channel_by_invite_link_then_read_it(world: World) -> None:
    control = world.sandbox.control
    secret = world.channel(public=False, posts=2)
    link = secret.invite_link
    # Not a member yet: the invite link cannot be resolved to a readable chat.
    world.refused(USER, s.ResolvePeer(peer=link), errors.NotFound)

    joined = world.request(USER, s.JoinChannel(peer=link), key=key())
    assert isinstance(joined, s.Joined)
    assert joined.peer.id == channel_id(secret) and joined.peer.kind == "channel"
    assert world.user.id in control.channel(secret.id).members

    resolved = world.request(USER, s.ResolvePeer(peer=link))
    assert resolved == joined.peer
    history = world.request(USER, s.FetchHistory(peer=link, limit=10))
    assert isinstance(history, s.History)
    assert [m.text for m in history.messages] == ["post 2", "post 1"]
    world.refused(USER, s.JoinChannel(peer="https://t.me/+NoSuchInvite"), errors.NotFound)


def test_join_errors_are_typed(world: World) -> None:
    world.refused(USER, s.JoinChannel(peer="no_such_channel_here"), errors.NotFound)
    news = world.channel()
    # Bots cannot join channels: Telegram's own error name comes back.
    error = world.refused(BOT, s.JoinChannel(peer=news.username or ""), errors.BadRequest)
    assert error.message.startswith("BOT_METHOD_INVALID")


def test_private_channel_cannot_be_joined_or_read_after_removal(world: World) -> None:
    """A private channel the account knew (it was a member) and was removed from."""
    control = world.sandbox.control
    secret = world.channel(public=False, posts=3)
    control.add_member(secret.id, world.user.id)
    # The account learns the channel (and its access hash) from its dialogs.
    dialogs = world.request(USER, s.GetDialogs())
    assert isinstance(dialogs, s.Dialogs)
    assert channel_id(secret) in [d.peer.id for d in dialogs.dialogs]
    history = world.request(USER, s.FetchHistory(peer=channel_id(secret)))
    assert isinstance(history, s.History) and len(history.messages) == 3

    control.remove_member(secret.id, world.user.id)
    error = world.refused(USER, s.JoinChannel(peer=channel_id(secret)), errors.Unauthorized, key())
    assert error.message.startswith("CHANNEL_PRIVATE")
    assert world.user.id not in control.channel(secret.id).members
    error = world.refused(USER, s.FetchHistory(peer=channel_id(secret)), errors.Unauthorized)
    assert error.message.startswith("CHANNEL_PRIVATE")


# -- FetchHistory -------------------------------------------------------------------------


def test_fetch_history_pages_like_the_sandbox_holds_it(world: World) -> None:
    news = world.channel(posts=12)
    held = [m.id for m in world.sandbox.control.history(news.id)][::-1]  # newest first
    assert len(held) == 12

    def ids(**page: int) -> list[int]:
        history = world.request(USER, s.FetchHistory(peer=news.username or "", **page))
        assert isinstance(history, s.History)
        assert history.peer.id == channel_id(news)
        assert all(m.chat_id == channel_id(news) for m in history.messages)
        return [m.id for m in history.messages]

    assert ids() == held
    first = ids(limit=5)
    assert first == held[:5]
    second = ids(limit=5, offset_id=first[-1])
    assert second == held[5:10]
    assert ids(limit=5, offset_id=second[-1]) == held[10:]
    assert ids(min_id=held[3]) == held[:3]
    assert ids(offset_id=held[2], min_id=held[6]) == held[3:6]
    assert ids(offset_id=held[-1]) == []

    texts = world.request(USER, s.FetchHistory(peer=news.username or "", limit=1))
    assert isinstance(texts, s.History)
    assert texts.messages[0].text == "post 12" and texts.messages[0].date > 0


def test_fetch_history_of_a_private_chat(world: World) -> None:
    control = world.sandbox.control
    sent = [control.send_message(world.carol.id, world.user.id, f"hi {i}") for i in range(3)]
    history = world.request(USER, s.FetchHistory(peer=world.carol.username or "", limit=3))
    assert isinstance(history, s.History)
    assert [m.text for m in history.messages] == [m.text for m in reversed(sent)]
    assert all(m.sender_id == world.carol.id for m in history.messages)


def test_fetch_history_rejects_invalid_input(world: World) -> None:
    news = world.channel(posts=1)
    peer = news.username or ""
    for bad in (
        s.FetchHistory(peer=peer, limit=0),
        s.FetchHistory(peer=peer, limit=-5),
        s.FetchHistory(peer=peer, limit=1001),
        s.FetchHistory(peer=peer, offset_id=-1),
        s.FetchHistory(peer=peer, min_id=-1),
    ):
        world.refused(USER, bad, errors.BadRequest)
    world.refused(USER, s.FetchHistory(peer="no_such_chat_x"), errors.NotFound)
    # Bots may not read history in Telegram.
    error = world.refused(BOT, s.FetchHistory(peer=peer), errors.BadRequest)
    assert error.message.startswith("BOT_METHOD_INVALID")


# -- SendMessage --------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["bot", "user"])
def test_send_message_is_delivered_exactly_once(world: World, sender: str) -> None:
    control = world.sandbox.control
    sender_id = world.bot.id if sender == "bot" else world.user.id
    before = len(control.inbox(world.carol.id, sender_id))
    text = f"hello from {sender} {uuid.uuid4().hex[:6]}"
    k = key()
    sent = world.request(
        f"session:{sender}", s.SendMessage(peer=world.carol.username or "", text=text), key=k
    )
    assert isinstance(sent, s.Sent)
    assert sent.message.text == text and sent.message.chat_id == world.carol.id
    assert sent.message.sender_id == sender_id and sent.message.id > 0
    inbox = control.inbox(world.carol.id, sender_id)
    assert [m.text for m in inbox[before:]] == [text]

    calls = control.calls("messages.sendMessage")
    again = world.request(
        f"session:{sender}", s.SendMessage(peer=world.carol.username or "", text=text), key=k
    )
    assert again == sent
    assert control.calls("messages.sendMessage") == calls  # answered without Telegram
    assert [m.text for m in control.inbox(world.carol.id, sender_id)[before:]] == [text]


def test_send_message_as_a_reply(world: World) -> None:
    control = world.sandbox.control
    question = control.send_message(world.carol.id, world.user.id, "are you there?")
    box = world.request(USER, s.FetchHistory(peer=world.carol.id, limit=1))
    assert isinstance(box, s.History) and box.messages[0].text == question.text
    sent = world.request(
        USER,
        s.SendMessage(peer=world.carol.id, text="yes", reply_to=box.messages[0].id),
        key=key(),
    )
    assert isinstance(sent, s.Sent) and sent.message.reply_to == box.messages[0].id


def test_send_message_rejects_invalid_input(world: World) -> None:
    control = world.sandbox.control
    calls = control.calls("messages.sendMessage")
    carol = world.carol.username or ""
    error = world.refused(USER, s.SendMessage(peer=carol, text="no key"), errors.BadRequest)
    assert "idempotency key" in error.message
    for text in ("", "   \n"):
        error = world.refused(USER, s.SendMessage(peer=carol, text=text), errors.BadRequest, key())
        assert error.message.startswith("MESSAGE_EMPTY")
    error = world.refused(
        USER, s.SendMessage(peer=carol, text="x" * 4097), errors.BadRequest, key()
    )
    assert error.message.startswith("MESSAGE_TOO_LONG")
    world.refused(
        USER,
        s.SendMessage(peer="no_such_person_x", text="hi"),
        errors.NotFound,
        key(),
    )
    assert control.calls("messages.sendMessage") == calls
    assert "no key" not in [m.text for m in control.inbox(world.carol.id, world.user.id)]


# -- EditMessage --------------------------------------------------------------------------


def test_bot_edits_its_message_and_an_unchanged_edit_is_no_error(world: World) -> None:
    control = world.sandbox.control
    carol = world.carol.username or ""
    menu = [[s.Button(text="One", data=b"1")]]
    sent = world.request(BOT, s.SendMessage(peer=carol, text="Menu", buttons=menu), key=key())
    assert isinstance(sent, s.Sent)
    msg_id = sent.message.id

    second = [[s.Button(text="Two", data=b"2"), s.Button(text="Docs", url="https://x.org")]]
    edit = s.EditMessage(peer=carol, message_id=msg_id, text="Menu, page 2", buttons=second)
    edited = world.request(BOT, edit)
    assert isinstance(edited, s.Sent)
    assert edited.message.id == msg_id and edited.message.text == "Menu, page 2"
    assert edited.message.buttons == second and edited.message.edit_date > 0
    seen = control.inbox(world.carol.id, world.bot.id)[-1]
    assert seen.text == "Menu, page 2" and [b.text for b in seen.buttons[0]] == ["Two", "Docs"]

    # The same edit again: Telegram answers MESSAGE_NOT_MODIFIED, the caller the message.
    calls = control.calls("messages.editMessage")["messages.editMessage"]
    again = world.request(BOT, edit)
    assert control.calls("messages.editMessage")["messages.editMessage"] == calls + 1
    assert isinstance(again, s.Sent) and again.message == edited.message


def test_edit_message_errors_are_typed(world: World) -> None:
    control = world.sandbox.control
    carol = world.carol.username or ""
    calls = control.calls("messages.editMessage")
    for text in ("", "  "):
        error = world.refused(
            BOT, s.EditMessage(peer=carol, message_id=1, text=text), errors.BadRequest
        )
        assert error.message.startswith("MESSAGE_EMPTY")
    error = world.refused(
        BOT,
        s.EditMessage(peer=carol, message_id=1, text="x" * 4097),
        errors.BadRequest,
    )
    assert error.message.startswith("MESSAGE_TOO_LONG")
    world.refused(BOT, s.EditMessage(peer=carol, message_id=0, text="x"), errors.BadRequest)
    assert control.calls("messages.editMessage") == calls

    world.refused(BOT, s.EditMessage(peer=carol, message_id=10**6, text="x"), errors.NotFound)
    world.refused(
        BOT,
        s.EditMessage(peer="no_such_person_x", message_id=1, text="x"),
        errors.NotFound,
    )
    # Carol's message in the user's chat is not the user's to edit.
    theirs = control.send_message(world.carol.id, world.user.id, "mine, not yours")
    box = world.request(USER, s.FetchHistory(peer=world.carol.id, limit=1))
    assert isinstance(box, s.History) and box.messages[0].text == theirs.text
    error = world.refused(
        USER,
        s.EditMessage(peer=world.carol.id, message_id=box.messages[0].id, text="changed"),
        errors.Unauthorized,
    )
    assert error.message.startswith("MESSAGE_AUTHOR_REQUIRED")


# -- DeleteMessages ------------------------------------------------------------------------


def test_bot_deletes_its_message_from_both_sides_and_a_repeat_deletes_nothing(
    world: World,
) -> None:
    control = world.sandbox.control
    carol = world.carol.username or ""
    kept = world.request(BOT, s.SendMessage(peer=carol, text="stays"), key=key())
    gone = world.request(BOT, s.SendMessage(peer=carol, text="goes away"), key=key())
    assert isinstance(kept, s.Sent) and isinstance(gone, s.Sent)
    theirs = control.send_message(world.carol.id, world.bot.id, "carol's own")

    deleted = world.request(BOT, s.DeleteMessages(peer=carol, message_ids=[gone.message.id]))
    assert deleted == s.Deleted(count=1)
    seen = [m.text for m in control.chat(world.carol.id, world.bot.id)]
    assert "goes away" not in seen
    assert {"stays", theirs.text} <= set(seen)
    assert gone.message.id not in [m.id for m in control.outbox(world.bot.id, world.carol.id)]

    again = world.request(BOT, s.DeleteMessages(peer=carol, message_ids=[gone.message.id]))
    assert again == s.Deleted(count=0)  # already gone: no error, nothing else touched
    assert [m.text for m in control.chat(world.carol.id, world.bot.id)] == seen


def test_delete_messages_errors_are_typed_and_the_session_goes_on(world: World) -> None:
    control = world.sandbox.control
    carol = world.carol.username or ""
    calls = control.calls("messages.deleteMessages")
    error = world.refused(BOT, s.DeleteMessages(peer=carol, message_ids=[]), errors.BadRequest)
    assert error.message.startswith("MESSAGE_IDS_EMPTY")
    too_many = list(range(1, s.MAX_DELETE + 2))
    error = world.refused(
        BOT, s.DeleteMessages(peer=carol, message_ids=too_many), errors.BadRequest
    )
    assert error.message.startswith("MESSAGE_IDS_TOO_MANY")
    error = world.refused(BOT, s.DeleteMessages(peer=carol, message_ids=[0]), errors.BadRequest)
    assert error.message.startswith("MESSAGE_ID_INVALID")
    world.refused(BOT, s.DeleteMessages(peer="no_such_person_x", message_ids=[1]), errors.NotFound)
    assert control.calls("messages.deleteMessages") == calls

    # Another's post: the user reads the channel but is not its admin.
    channel = world.channel(posts=1)
    world.request(USER, s.JoinChannel(peer=channel.username or ""))
    post_id = control.history(channel.id)[-1].id
    error = world.refused(
        USER,
        s.DeleteMessages(peer=channel_id(channel), message_ids=[post_id]),
        errors.Unauthorized,
    )
    assert error.message.startswith("CHAT_ADMIN_REQUIRED")
    assert post_id in [m.id for m in control.history(channel.id)]

    # The session goes on: its own message is still deleted at once.
    mine = world.request(BOT, s.SendMessage(peer=carol, text="short-lived"), key=key())
    assert isinstance(mine, s.Sent)
    deleted = world.request(BOT, s.DeleteMessages(peer=carol, message_ids=[mine.message.id]))
    assert deleted == s.Deleted(count=1)


def test_inline_button_press_reaches_the_bot_and_is_answered(world: World) -> None:
    control = world.sandbox.control
    bot = world.actor(BOT)
    bot_ref = world.bot.username
    commands = len(bot.port.events_of(BotCommand))
    control.send_message(world.carol.id, world.bot.id, "/start hello there")
    command = bot.wait_for(lambda: bot.port.events_of(BotCommand)[commands:], CALL_TIMEOUT)[0]
    assert bot.port.published[-1] == (bot_topic("bot"), command)
    assert (command.command, command.args) == ("start", "hello there")
    assert command.user_id == world.carol.id and command.username == "carol_requests"

    buttons = [[s.Button(text="Yes", data=b"yes"), s.Button(text="Site", url="https://x.org")]]
    sent = world.request(
        BOT,
        s.SendMessage(peer=world.carol.username or "", text="Proceed?", buttons=buttons),
        key=key(),
    )
    assert sent.message.buttons == buttons
    received = control.inbox(world.carol.id, world.bot.id)[-1]
    assert received.text == "Proceed?"
    assert [b.text for b in received.buttons[0]] == ["Yes", "Site"]

    async def press() -> types.messages.BotCallbackAnswer:
        peer = await world.carol_client.get_input_entity(bot_ref)
        request = functions.messages.GetBotCallbackAnswerRequest(
            peer=peer, msg_id=received.id, data=b"yes"
        )
        return await world.carol_client(request)

    queries = len(bot.port.events_of(CallbackQuery))
    pressed = world.phones.loop.submit(press())
    query = bot.wait_for(lambda: bot.port.events_of(CallbackQuery)[queries:], CALL_TIMEOUT)[0]
    assert (bot_topic("bot"), query) in bot.port.published
    assert query.account == "bot" and query.data == b"yes"
    assert query.user_id == world.carol.id and query.message_id == sent.message.id
    answered = world.request(BOT, s.AnswerCallback(query_id=query.query_id, text="Done!"))
    assert answered == s.Answered()
    answer = pressed.result(CALL_TIMEOUT)
    assert answer.message == "Done!" and not answer.alert

    # The query is answered once: a second answer (or a made-up id) is Telegram's error.
    error = world.refused(
        BOT,
        s.AnswerCallback(query_id=query.query_id, text="again"),
        errors.BadRequest,
    )
    assert error.message.startswith("QUERY_ID_INVALID")


# -- GetDialogs ---------------------------------------------------------------------------


def test_get_dialogs_lists_channels_and_chats(world: World) -> None:
    control = world.sandbox.control
    news = world.channel(posts=2)
    control.add_member(news.id, world.user.id)
    control.send_message(world.carol.id, world.user.id, "dialog ping")
    dialogs = world.request(USER, s.GetDialogs(limit=100))
    assert isinstance(dialogs, s.Dialogs)
    by_id = {d.peer.id: d for d in dialogs.dialogs}
    top = control.history(news.id)[-1].id
    assert by_id[channel_id(news)].peer.kind == "channel"
    assert by_id[channel_id(news)].top_message == top
    assert by_id[world.carol.id].peer.kind == "user"

    one = world.request(USER, s.GetDialogs(limit=1))
    assert isinstance(one, s.Dialogs) and len(one.dialogs) == 1
    for bad in (0, -1, 1001):
        world.refused(USER, s.GetDialogs(limit=bad), errors.BadRequest)
    error = world.refused(BOT, s.GetDialogs(), errors.BadRequest)
    assert error.message.startswith("BOT_METHOD_INVALID")


# -- ExportSession ------------------------------------------------------------------------


def test_export_session_only_for_allowed_senders(world: World) -> None:
    # Nothing allowed (the bot), or only other senders ("bot:*" for nobody).
    for target in (BOT, NOBODY):
        error = world.refused(target, s.ExportSession(), errors.Unauthorized)
        assert SENDER in error.message and "export_allowed" in error.message

    exported = world.request(USER, s.ExportSession())
    assert isinstance(exported, s.SessionExport)
    assert exported.session_string not in repr(exported)
    session = StringSession(exported.session_string)
    assert session.auth_key is not None and len(session.auth_key.key) > 0
    assert (session.server_address, session.port) == (world.sandbox.host, world.sandbox.port)


def test_send_message_repeats_in_flight_get_the_first_result(world: World) -> None:
    """Three requests with one key, all sent before any answer: one message, one result."""
    control = world.sandbox.control
    before = len(control.inbox(world.carol.id, world.user.id))
    k = key()
    body = s.SendMessage(peer=world.carol.username or "", text=f"once {k[:6]}")
    user = world.actor(USER)
    sent_ids = [
        user.send(body, sender=SENDER, timeout=CALL_TIMEOUT, idempotency_key=k) for _ in range(3)
    ]
    first, *others = [user.reply(request_id, CALL_TIMEOUT) for request_id in sent_ids]
    assert isinstance(first, s.Sent) and all(other == first for other in others)
    assert [m.text for m in control.inbox(world.carol.id, world.user.id)[before:]] == [body.text]
