"""The pure parsing of channel references and posts (actors/parser/parsing.py), as tables."""

from __future__ import annotations

import pytest

from actors.parser.parsing import ChannelRef, RefError, marked_channel_id, parse_ref, post_data
from protocols.session import ChatMessage
from protocols.store import MAX_TEXT, PostData


@pytest.mark.parametrize(
    ("text", "kind", "value", "key"),
    [
        ("@durov", "username", "durov", "username:durov"),
        ("Durov_News", "username", "Durov_News", "username:durov_news"),
        ("  @News  ", "username", "News", "username:news"),
        ("t.me/news", "username", "news", "username:news"),
        ("https://t.me/news", "username", "news", "username:news"),
        ("https://t.me/news/1234", "username", "news", "username:news"),
        ("http://telegram.me/news", "username", "news", "username:news"),
        ("https://t.me/s/news", "username", "news", "username:news"),
        ("tg://resolve?domain=news", "username", "news", "username:news"),
        ("https://t.me/+AbCd_12-xYz", "invite", "AbCd_12-xYz", "invite:AbCd_12-xYz"),
        ("t.me/joinchat/AbCd1234", "invite", "AbCd1234", "invite:AbCd1234"),
        ("https://t.me/c/1234567890/55", "id", "-1001234567890", "id:-1001234567890"),
        ("-1001234567890", "id", "-1001234567890", "id:-1001234567890"),
        ("1234567890", "id", "-1001234567890", "id:-1001234567890"),
    ],
)
def test_references_parse(text: str, kind: str, value: str, key: str) -> None:
    ref = parse_ref(text)
    assert (ref.kind, ref.value, ref.key) == (kind, value, key)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@", "username"),
        ("@ab", "username"),
        ("@9news", "username"),
        ("@news; DROP TABLE", "username"),
        ("x" * 300, "longer than"),
        ("https://example.com/news", "not a t.me link"),
        ("ftp://t.me/news", "not a t.me link"),
        ("https://t.me/", "names no channel"),
        ("https://t.me/+a", "invite"),
        ("https://t.me/+abc$def", "invite"),
        ("0", "not a channel id"),
        ("-5", "not a channel id"),
        ("99999999999999999999", "not a channel id"),
        ("tg://resolve?domain=", "username"),
        ("@news\x00", "username"),
    ],
)
def test_bad_references_say_why(text: str, why: str) -> None:
    with pytest.raises(RefError, match=why):
        parse_ref(text)


@pytest.mark.parametrize(
    ("ref", "peer"),
    [
        (ChannelRef("username", "news"), "news"),
        (ChannelRef("invite", "AbCd1234"), "https://t.me/+AbCd1234"),
        (ChannelRef("id", "-1001234"), -1001234),
    ],
)
def test_references_give_the_peer_a_session_takes(ref: ChannelRef, peer: str | int) -> None:
    assert ref.peer == peer


@pytest.mark.parametrize(
    ("raw", "marked"),
    [(1234, -1000000001234), (-1000000001234, -1000000001234)],
)
def test_marked_channel_ids(raw: int, marked: int) -> None:
    assert marked_channel_id(raw) == marked


@pytest.mark.parametrize(
    ("message", "post"),
    [
        (
            ChatMessage(id=5, chat_id=-1001, date=100, text="hello", views=3),
            PostData(message_id=5, date=100, text="hello", views=3),
        ),
        (
            ChatMessage(id=6, chat_id=-1001, date=100, edit_date=120, media="photo", forwards=2),
            PostData(message_id=6, date=100, edit_date=120, media="photo", forwards=2),
        ),
        (
            ChatMessage(id=7, chat_id=-1001, date=100, text="x" * (MAX_TEXT + 10), views=-1),
            PostData(message_id=7, date=100, text="x" * MAX_TEXT),
        ),
        (
            ChatMessage(id=8, chat_id=-1001, date=100),
            PostData(message_id=8, date=100, media="other"),
        ),
        (
            ChatMessage(id=9, chat_id=-1001, date=100, media="Photo"),
            PostData(message_id=9, date=100, media="photo"),
        ),
    ],
)
def test_messages_become_posts(message: ChatMessage, post: PostData) -> None:
    assert post_data(message) == post


@pytest.mark.parametrize(
    "message",
    [ChatMessage(id=0, chat_id=-1001, date=100), ChatMessage(id=3, chat_id=-1001, date=0)],
)
def test_messages_without_id_or_date_are_refused(message: ChatMessage) -> None:
    with pytest.raises(ValueError, match="no id or date"):
        post_data(message)
