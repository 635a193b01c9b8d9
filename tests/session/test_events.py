"""Updates become typed events on the bus: posts, edits, deletions, private messages."""

from __future__ import annotations

from protocols.base import Message
from protocols.events import DeletedPost, EditedPost, NewMessage, NewPost, message_topic, post_topic
from runtime.client import Client, Subscriber
from tests.runtime.support import Proc
from tests.session.conftest import Sessions
from tests.session.support import log_in


def _next(events: Subscriber, kind: type[Message]) -> tuple[str, Message]:
    """The next event of ``kind`` (others, such as session states, are skipped)."""
    while (event := events.receive(20)) is not None:
        if isinstance(event[1], kind):
            return event
    raise AssertionError(f"no {kind.__name__} event")


def test_channel_posts_edits_deletions_and_private_messages(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    assert sessions.sandbox is not None
    control = sessions.sandbox.control
    phone, reader = sessions.add_user("reader")
    channel = control.create_channel("Events", "events_channel")
    control.add_member(channel.id, reader.id)
    friend = control.create_user("+15557770000", "Friend")
    sessions.node("n1", "reader")
    log_in(sessions, client, "reader", phone)
    chat_id = int(f"-100{channel.id}")

    with Subscriber(sessions.events_out, [post_topic(chat_id), message_topic("reader")]) as events:
        posted = control.post(channel.id, "first post")
        topic, new = _next(events, NewPost)
        assert topic == post_topic(chat_id)
        assert isinstance(new, NewPost) and new.account == "reader"
        assert new.channel_id == chat_id
        assert (new.message.id, new.message.text) == (posted.id, "first post")

        control.edit_post(channel.id, posted.id, "first post, edited")
        _, edited = _next(events, EditedPost)
        assert isinstance(edited, EditedPost)
        assert (edited.message.id, edited.message.text) == (posted.id, "first post, edited")

        control.delete_posts(channel.id, [posted.id])
        _, deleted = _next(events, DeletedPost)
        assert isinstance(deleted, DeletedPost) and deleted.message_ids == [posted.id]

        control.send_message(friend.id, reader.id, "hello there")
        topic, private = _next(events, NewMessage)
        assert topic == message_topic("reader")
        assert isinstance(private, NewMessage) and private.message.text == "hello there"
        assert private.message.sender_id == friend.id
