"""Telethon objects as Switchboard's messages: real Telethon types, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from telethon.tl import types

from actors import convert
from protocols import errors

WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def document(*attributes: Any) -> types.MessageMediaDocument:
    doc = types.Document(
        id=1,
        access_hash=2,
        file_reference=b"",
        date=WHEN,
        mime_type="application/octet-stream",
        size=10,
        dc_id=1,
        attributes=list(attributes),
    )
    return types.MessageMediaDocument(document=doc)


def video(round_message: bool = False) -> types.DocumentAttributeVideo:
    return types.DocumentAttributeVideo(duration=1.0, w=1, h=1, round_message=round_message)


PHOTO = types.Photo(id=1, access_hash=2, file_reference=b"", date=WHEN, sizes=[], dc_id=1)
POLL = types.Poll(
    id=1,
    hash=0,
    question=types.TextWithEntities(text="Which?", entities=[]),
    answers=[types.PollAnswer(text=types.TextWithEntities(text="A", entities=[]), option=b"a")],
)


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        (None, ""),
        (types.MessageMediaEmpty(), ""),
        (types.MessageMediaPhoto(photo=PHOTO), "photo"),
        (document(video()), "video"),
        (document(video(round_message=True)), "video_note"),
        (document(types.DocumentAttributeAnimated(), video()), "gif"),
        (document(types.DocumentAttributeAudio(duration=1, voice=True)), "voice"),
        (document(types.DocumentAttributeAudio(duration=1)), "audio"),
        (
            document(
                types.DocumentAttributeSticker(alt="x", stickerset=types.InputStickerSetEmpty())
            ),
            "sticker",
        ),
        (document(types.DocumentAttributeFilename(file_name="a.pdf")), "document"),
        (types.MessageMediaDocument(), "document"),  # expired or self-destructed
        (types.MessageMediaPoll(poll=POLL, results=types.PollResults()), "poll"),
        (types.MessageMediaGeo(geo=types.GeoPointEmpty()), "location"),
        (types.MessageMediaDice(value=3, emoticon="🎲"), "dice"),
        (types.MessageMediaUnsupported(), "unsupported"),
    ],
)
def test_media_kind_names_what_a_message_carries(media: Any, kind: str) -> None:
    assert convert.media_kind(media) == kind


def test_a_channel_post_carries_its_media_views_and_forwards() -> None:
    post = types.Message(
        id=7,
        peer_id=types.PeerChannel(1234),
        date=WHEN,
        message="look",
        media=types.MessageMediaPhoto(photo=PHOTO),
        views=120,
        forwards=9,
    )
    message = convert.message(post)
    assert (message.id, message.chat_id, message.text) == (7, -1000000001234, "look")
    assert (message.media, message.views, message.forwards) == ("photo", 120, 9)

    plain = convert.message(types.Message(id=8, peer_id=types.PeerUser(5), date=WHEN, message="hi"))
    assert (plain.media, plain.views, plain.forwards) == ("", 0, 0)


def test_a_value_error_is_not_a_telegram_error() -> None:
    """A ValueError is ours to fix (Internal); only lookups turn Telethon's into NotFound."""
    assert convert.error(ValueError("Cannot find any entity")) is None
    assert isinstance(convert.error(ConnectionResetError()), errors.Unavailable)
