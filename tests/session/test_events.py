"""Updates become typed events on the bus: posts, edits, deletions, private messages.

The session actor runs in this process (``Hosted``) and what it publishes is read from
its harness; the bus itself is tested in tests/runtime/test_bus.py.
"""

from __future__ import annotations

from typing import TypeVar

from protocols.base import Message
from protocols.events import DeletedPost, EditedPost, NewMessage, NewPost, message_topic, post_topic
from runtime.testing import ActorHarness
from sandbox import SandboxThread
from tests.session.support import CALL_TIMEOUT, Hosted

M = TypeVar("M", bound=Message)


def _next(actor: ActorHarness, kind: type[M]) -> tuple[str, M]:
    """The first event of ``kind`` the actor published, with its topic."""

    def arrived() -> list[tuple[str, M]]:
        return [(t, e) for t, e in actor.port.published if isinstance(e, kind)]

    return actor.wait_for(arrived, CALL_TIMEOUT)[0]


def test_channel_posts_edits_deletions_and_private_messages(
    hosted: Hosted, sandbox: SandboxThread
) -> None:
    control = sandbox.control
    phone, reader = hosted.sessions.add_user("reader")
    channel = control.create_channel("Events", "events_channel")
    control.add_member(channel.id, reader.id)
    friend = control.create_user("+15557770000", "Friend")
    actor = hosted.start("reader")
    hosted.log_in("reader", phone)
    chat_id = int(f"-100{channel.id}")

    posted = control.post(channel.id, "first post")
    topic, new = _next(actor, NewPost)
    assert topic == post_topic(chat_id)
    assert new.account == "reader" and new.channel_id == chat_id
    assert (new.message.id, new.message.text) == (posted.id, "first post")

    control.edit_post(channel.id, posted.id, "first post, edited")
    topic, edited = _next(actor, EditedPost)
    assert topic == post_topic(chat_id)
    assert (edited.message.id, edited.message.text) == (posted.id, "first post, edited")

    control.delete_posts(channel.id, [posted.id])
    topic, deleted = _next(actor, DeletedPost)
    assert topic == post_topic(chat_id) and deleted.message_ids == [posted.id]

    control.send_message(friend.id, reader.id, "hello there")
    topic, private = _next(actor, NewMessage)
    assert topic == message_topic("reader")
    assert private.message.text == "hello there" and private.message.sender_id == friend.id
