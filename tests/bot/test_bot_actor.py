"""The BotActor in process: commands, buttons, access and delivery logic.

The actor runs in a real mailbox on a fake port (``runtime.testing``) whose asks are
answered by :class:`Desk`, a table standing in for the session, parser and store actors.
What needs real processes and the sandbox (exactly once across kill -9, the measured
send rates, the parser being slow for real) is in ``test_bot_system.py``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import msgspec
import pytest

from actors.bot import BotActor
from config import BotSettings, DeliverySettings, Settings
from protocols import errors
from protocols import parser as p
from protocols import session as s
from protocols import store as st
from protocols.base import Message
from protocols.events import BotCommand, CallbackQuery, PostStored, bot_topic, stored_topic
from runtime.testing import ActorHarness

ADMIN, USER, STRANGER = 1, 7, 9
NEWS = st.Channel(id=-100123, username="news_channel", title="News")


class Desk:
    """Answers the bot's asks the way the session, parser and store do, in memory."""

    def __init__(self) -> None:
        self.ids = itertools.count(100)
        self.subs: dict[tuple[str, int], st.Subscription] = {}
        self.posts: list[st.Post] = []
        self.deliveries: dict[tuple[str, int, int], st.Delivery] = {}
        self.cursor = 0
        self.add_answers: list[Message] = []

    def answers(self) -> dict[object, object]:
        return {
            s.SendMessage: lambda b: s.Sent(
                message=s.ChatMessage(id=next(self.ids), chat_id=b.peer, date=0, text=b.text)
            ),
            s.EditMessage: lambda b: s.Sent(
                message=s.ChatMessage(id=b.message_id, chat_id=b.peer, date=0, text=b.text)
            ),
            s.DeleteMessages: lambda b: s.Deleted(count=len(b.message_ids)),
            s.AnswerCallback: s.Answered(),
            p.AddChannel: self.add,
            p.RemoveChannel: p.ChannelRemoved(channel_id=NEWS.id),
            p.GetParserStatus: p.ParserStatus(
                readers=[p.ReaderInfo(account="reader", state="authorized", channels=1)],
                channels=[NEWS],
            ),
            st.GetStoreStats: st.StoreStats(posts=3),
            st.Subscribe: self.subscribe,
            st.Unsubscribe: self.unsubscribe,
            st.ListSubscriptions: self.list_subs,
            st.ListChannels: st.Channels(channels=[NEWS]),
            st.GetChannel: lambda b: (
                NEWS
                if b.channel_id == NEWS.id or b.username == NEWS.username
                else errors.NotFound(message="no")
            ),
            st.GetCursor: lambda b: st.Cursor(name=b.name, seq=self.cursor),
            st.SaveCursor: self.save_cursor,
            st.PostsSince: lambda b: st.Posts(
                posts=[x for x in self.posts if x.seq > b.after_seq][: b.limit]
            ),
            st.GetDeliveries: lambda b: st.Deliveries(
                deliveries=[
                    d for k, d in self.deliveries.items() if k[1:] == (b.channel_id, b.message_id)
                ]
            ),
            st.RecordDelivery: self.record,
        }

    def add(self, body: p.AddChannel) -> Message:
        if self.add_answers:
            return self.add_answers.pop(0)
        return p.ChannelAdded(channel=NEWS, backfilled=3)

    def subscribe(self, b: st.Subscribe) -> Message:
        sub = st.Subscription(subscriber=b.subscriber, channel_id=b.channel_id, keywords=b.keywords)
        self.subs[(b.subscriber, b.channel_id)] = sub
        return st.Subscribed(subscription=sub, created=True)

    def unsubscribe(self, b: st.Unsubscribe) -> Message:
        return st.Unsubscribed(
            removed=self.subs.pop((b.subscriber, b.channel_id), None) is not None
        )

    def list_subs(self, b: st.ListSubscriptions) -> Message:
        return st.Subscriptions(
            subscriptions=[
                x
                for x in self.subs.values()
                if (not b.subscriber or x.subscriber == b.subscriber)
                and (not b.channel_id or x.channel_id == b.channel_id)
            ]
        )

    def save_cursor(self, b: st.SaveCursor) -> Message:
        self.cursor = max(self.cursor, b.seq)
        return st.Cursor(name=b.name, seq=self.cursor)

    def record(self, b: st.RecordDelivery) -> Message:
        d = b.delivery
        self.deliveries[(d.subscriber, d.channel_id, d.message_id)] = d
        return st.DeliveryRecorded(delivery=d, created=True)


@pytest.fixture
def desk() -> Desk:
    return Desk()


def make_bot(desk: Desk, **bot: object) -> ActorHarness:
    delivery = DeliverySettings(overall_per_s=1000, private_per_s=1000, poll_interval_s=0.1)
    settings = Settings(
        bot=msgspec.structs.replace(BotSettings(admins=[ADMIN], delivery=delivery), **bot)
    )
    return ActorHarness(
        functools.partial(BotActor, settings=settings),
        address="bot:newsbot",
        answers=desk.answers(),
    )


@pytest.fixture
def bot(desk: Desk) -> Iterator[ActorHarness]:
    with make_bot(desk) as harness:
        yield harness


_message_ids = itertools.count(1)


def command(
    h: ActorHarness, text: str, user: int = USER, message_id: int = 0, edited: bool = False
) -> int:
    head, _, args = text.partition(" ")
    message_id = message_id or next(_message_ids)
    h.event(
        bot_topic("newsbot"),
        BotCommand(
            account="newsbot",
            command=head[1:],
            args=args.strip(),
            chat_id=user,
            user_id=user,
            message_id=message_id,
            edited=edited,
        ),
    )
    return message_id


def said(h: ActorHarness, chat: int = USER) -> list[str]:
    return [b.text for b in h.port.asks_of(s.SendMessage) if b.peer == chat]


def wait_said(h: ActorHarness, needle: str, chat: int = USER) -> str:
    return h.wait_for(lambda: next((t for t in said(h, chat) if needle in t), None))


def wait_edited(h: ActorHarness, needle: str) -> str:
    return h.wait_for(
        lambda: next((b.text for b in h.port.asks_of(s.EditMessage) if needle in b.text), None)
    )


def test_start_and_help_list_the_commands(bot: ActorHarness) -> None:
    command(bot, "/start")
    text = wait_said(bot, "/add_channel")
    assert "/my_channels" in text and "/status" not in text


def test_an_unknown_command_gets_help(bot: ActorHarness) -> None:
    command(bot, "/frobnicate now")
    assert "/add_channel" in wait_said(bot, "I don't know /frobnicate")


def test_add_channel_answers_at_once_then_edits_in_the_outcome_and_subscribes(
    bot: ActorHarness, desk: Desk
) -> None:
    command(bot, "/add_channel @news_channel Sport")
    adding = wait_said(bot, "Adding @news_channel")
    done = wait_edited(bot, "Watching News (@news_channel)")
    assert "when they mention: sport" in done and "3 recent posts" in done
    assert adding and desk.subs[(f"bot:newsbot:{USER}", NEWS.id)].keywords == ["sport"]


def test_a_flood_waited_parser_shows_the_wait_then_the_real_outcome(
    bot: ActorHarness, desk: Desk
) -> None:
    desk.add_answers = [errors.FloodWait(retry_after=0.2), errors.Timeout(message="slow")]
    command(bot, "/add_channel @news_channel")
    wait_edited(bot, "Telegram asks to wait")
    assert "Watching News" in wait_edited(bot, "Watching")
    assert len(bot.port.asks_of(p.AddChannel)) == 3
    assert not [t for t in said(bot) if "Timed out" in t or "wrong" in t]


@pytest.mark.parametrize(
    ("answer", "told"),
    [
        (errors.NotFound(message="USERNAME_NOT_OCCUPIED"), "There is no channel"),
        (errors.Unauthorized(message="CHANNEL_PRIVATE"), "invite link"),
        (errors.FloodWait(retry_after=86400), "wait 24 h"),
        (errors.Unavailable(message="CHANNELS_TOO_MUCH"), "limit reached"),
    ],
)
def test_add_channel_refusals_have_a_clear_reason(desk: Desk, answer: Message, told: str) -> None:
    desk.add_answers = [answer]
    with make_bot(desk) as bot:
        command(bot, "/add_channel @news_channel")
        wait_edited(bot, told)
    assert not desk.subs


@pytest.mark.parametrize(
    "text",
    [
        "/add_channel",
        "/add_channel not a channel!",
        "/add_channel '; DROP TABLE channels; --",
        "/add_channel <script>alert(1)</script>",
        "/add_channel @" + "x" * 5000,
        "/add_channel @news_channel " + " ".join(f"k{n}" for n in range(20)),
        "/add_channel @news_channel a\u202eb",
        "/remove_channel",
        "/remove_channel @a @b",
        "/remove_channel https://t.me/+AbCdEf",
        "/my_channels extra",
    ],
)
def test_wrong_missing_and_hostile_arguments_get_a_usage_line_and_change_nothing(
    bot: ActorHarness, desk: Desk, text: str
) -> None:
    command(bot, text)
    reply = bot.wait_for(lambda: said(bot))[0]
    assert "Usage" in reply or "Keywords" in reply or "no arguments" in reply
    assert "\u202e" not in reply and len(reply) < 400
    assert not bot.port.asks_of(p.AddChannel) and not desk.subs


def test_my_channels_pages_and_the_remove_button_unsubscribes(desk: Desk) -> None:
    channels = [st.Channel(id=-100 - n, title=f"C{n}") for n in range(7)]
    for c in channels:
        desk.subscribe(st.Subscribe(subscriber=f"bot:newsbot:{USER}", channel_id=c.id))
    answers = desk.answers()
    answers[st.ListChannels] = st.Channels(channels=channels)
    settings = Settings(bot=BotSettings(page_size=5))
    with ActorHarness(
        functools.partial(BotActor, settings=settings), address="bot:newsbot", answers=answers
    ) as bot:
        command(bot, "/my_channels")
        first = bot.wait_for(lambda: bot.port.asks_of(s.SendMessage))[0]
        assert "page 1/2" in first.text and len(first.buttons) == 6
        assert first.buttons[-1][0].data == b"pg:1"
        remove = first.buttons[0][0]
        bot.event(
            bot_topic("newsbot"),
            CallbackQuery(
                account="newsbot",
                query_id=5,
                data=remove.data,
                chat_id=USER,
                user_id=USER,
                message_id=100,
            ),
        )
        bot.wait_for(lambda: bot.port.asks_of(s.EditMessage))
        assert (f"bot:newsbot:{USER}", -100) not in desk.subs
        assert bot.port.asks_of(s.AnswerCallback)[0].text == "Removed."
        bot.event(
            bot_topic("newsbot"),
            CallbackQuery(
                account="newsbot",
                query_id=6,
                data=b"pg:1",
                chat_id=USER,
                user_id=USER,
                message_id=100,
            ),
        )
        assert "page 2/2" in wait_edited(bot, "page 2/2")


def test_status_is_for_admins_only(bot: ActorHarness) -> None:
    command(bot, "/status", user=USER)
    wait_said(bot, "Only the bot's admins")
    command(bot, "/status", user=ADMIN)
    text = wait_said(bot, "readers (1)", chat=ADMIN)
    assert "delivery: 0 queued" in text


def test_a_user_outside_the_allowlist_is_refused(desk: Desk) -> None:
    with make_bot(desk, mode="allowlist", allowlist=[USER]) as bot:
        command(bot, "/start", user=STRANGER)
        wait_said(bot, "this bot is private", chat=STRANGER)
        command(bot, "/start", user=USER)
        wait_said(bot, "/add_channel", chat=USER)


def test_an_edited_command_replaces_its_reply_without_a_new_message(
    bot: ActorHarness, desk: Desk
) -> None:
    message_id = command(bot, "/add_channel @news_channel")
    wait_edited(bot, "Watching")
    command(bot, "/add_channel @news_channel sport", message_id=message_id, edited=True)
    bot.wait_for(lambda: desk.subs[(f"bot:newsbot:{USER}", NEWS.id)].keywords == ["sport"])
    keys = {e.idempotency_key for _, b, e in bot.port.asks if isinstance(b, s.SendMessage)}
    assert keys == {f"reply:{USER}:{message_id}"}  # the session answers a repeat with the first


def post(seq: int, message_id: int, text: str, **extra: object) -> st.Post:
    return st.Post(seq=seq, channel_id=NEWS.id, message_id=message_id, date=0, text=text, **extra)


def test_new_posts_reach_matching_subscribers_once_with_a_link_and_the_cursor_moves(
    bot: ActorHarness, desk: Desk
) -> None:
    desk.subscribe(st.Subscribe(subscriber="bot:newsbot:7", channel_id=NEWS.id))
    desk.subscribe(st.Subscribe(subscriber="bot:newsbot:8", channel_id=NEWS.id, keywords=["sport"]))
    desk.subscribe(st.Subscribe(subscriber="bot:other:9", channel_id=NEWS.id))
    desk.posts = [post(1, 10, "weather"), post(2, 11, "Sport results")]
    bot.event(stored_topic(NEWS.id), PostStored(post=desk.posts[0]))
    bot.wait_for(lambda: desk.cursor == 2)
    sends = bot.port.asks_of(s.SendMessage)
    assert sorted((b.peer, b.text.split("\n\n")[1]) for b in sends) == [
        (7, "Sport results"),
        (7, "weather"),
        (8, "Sport results"),
    ]
    assert all(b.text.endswith(f"https://t.me/news_channel/{b.text[-2:]}") for b in sends)
    keys = {e.idempotency_key for _, b, e in bot.port.asks if isinstance(b, s.SendMessage)}
    assert "bot:newsbot:7:-100123:10" in keys
    assert desk.deliveries[("bot:newsbot:8", NEWS.id, 11)].status == "sent"


def test_an_edited_post_edits_its_copies_and_a_deleted_one_is_marked(
    bot: ActorHarness, desk: Desk
) -> None:
    desk.subscribe(st.Subscribe(subscriber="bot:newsbot:7", channel_id=NEWS.id))
    desk.posts = [post(1, 10, "first")]
    bot.event(stored_topic(NEWS.id), PostStored(post=desk.posts[0]))
    bot.wait_for(lambda: desk.cursor == 1)
    desk.posts = [post(2, 10, "first, corrected", edit_date=5)]
    bot.event(stored_topic(NEWS.id), PostStored(post=desk.posts[0]))
    assert "first, corrected" in wait_edited(bot, "corrected")
    desk.posts = [post(3, 10, "first, corrected", edit_date=5, deleted=True)]
    bot.event(stored_topic(NEWS.id), PostStored(post=desk.posts[0]))
    wait_edited(bot, "deleted in the channel")
    assert len(bot.port.asks_of(s.SendMessage)) == 1


def test_with_on_deleted_delete_a_deleted_post_deletes_each_copy_once_across_a_restart(
    desk: Desk,
) -> None:
    for chat in (7, 8):
        desk.subscribe(st.Subscribe(subscriber=f"bot:newsbot:{chat}", channel_id=NEWS.id))
    deleting = DeliverySettings(
        overall_per_s=1000, private_per_s=1000, poll_interval_s=0.1, on_deleted="delete"
    )
    desk.posts = [post(1, 10, "first"), post(2, 11, "second")]
    with make_bot(desk, delivery=deleting) as bot:
        bot.wait_for(lambda: desk.cursor == 2)
        copies = {(b.peer, b.text.split("\n\n")[1]): b for b in bot.port.asks_of(s.SendMessage)}
        desk.posts = [post(2, 11, "second"), post(3, 10, "first", deleted=True)]
        bot.event(stored_topic(NEWS.id), PostStored(post=desk.posts[1]))
        bot.wait_for(lambda: desk.cursor == 3)
        asked = bot.port.asks_of(s.DeleteMessages)
        assert bot.port.asks_of(s.EditMessage) == []
    assert len(copies) == 4
    first = {k: d for k, d in desk.deliveries.items() if k[2] == 10}
    assert sorted((b.peer, b.message_ids, b.revoke) for b in asked) == sorted(
        (int(k[0].rsplit(":", 1)[1]), [d.sent_message_id], True) for k, d in first.items()
    )
    assert {d.status for d in first.values()} == {"deleted"}
    assert {d.status for k, d in desk.deliveries.items() if k[2] == 11} == {"sent"}

    desk.cursor = 0  # a restart that lost the cursor plans every post again
    with make_bot(desk, delivery=deleting) as again:
        again.wait_for(lambda: desk.cursor == 3)
        assert again.port.asks_of(s.DeleteMessages) == []
        assert again.port.asks_of(s.SendMessage) == []


def test_a_flood_wait_for_one_chat_delays_only_that_chat(desk: Desk) -> None:
    for chat in (7, 8):
        desk.subscribe(st.Subscribe(subscriber=f"bot:newsbot:{chat}", channel_id=NEWS.id))
    desk.posts = [post(n, 10 + n, f"p{n}") for n in range(1, 4)]
    flooded = [True]
    answers = desk.answers()
    send = answers[s.SendMessage]

    def flaky(body: s.SendMessage) -> Message:
        if body.peer == 8 and flooded[0]:
            flooded[0] = False
            return errors.FloodWait(retry_after=0.5)
        return send(body)  # type: ignore[operator]

    answers[s.SendMessage] = flaky
    delivery = DeliverySettings(overall_per_s=1000, private_per_s=1000, poll_interval_s=0.1)
    settings = Settings(bot=BotSettings(delivery=delivery))
    with ActorHarness(
        functools.partial(BotActor, settings=settings), address="bot:newsbot", answers=answers
    ) as bot:
        bot.wait_for(lambda: desk.cursor == 3)
    order = [b.peer for b in bot.port.asks_of(s.SendMessage)]
    assert order[:4] == [7, 8, 7, 7] or order.index(8) < order.index(7, 2)
    assert order.count(7) == 3 and order.count(8) == 4  # one refused, then all three
    assert len({(k[0], k[2]) for k in desk.deliveries}) == 6
