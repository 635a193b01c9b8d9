"""Media on channel posts: what a post shows, built from the kind it was posted with.

The sandbox keeps no files. A post made with ``media="photo"`` (or another kind of
:data:`MEDIA_KINDS`) carries a MessageMedia whose photo or document has plausible sizes,
mime type and attributes, so clients tell the kinds apart exactly as on Telegram
(``message.photo``, ``message.video``, ``message.voice``, ...). Downloading is not
supported (there is no ``upload.getFile``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from telethon.tl import types
from telethon.tl.tlobject import TLObject

# kind -> (mime type, size, attributes of its document); photos and locations are not
# documents.
_DOCUMENTS: dict[str, tuple[str, int, list[TLObject]]] = {
    "document": ("application/pdf", 48_000, [types.DocumentAttributeFilename("report.pdf")]),
    "video": ("video/mp4", 900_000, [types.DocumentAttributeVideo(12.0, 640, 360)]),
    "video_note": (
        "video/mp4",
        300_000,
        [types.DocumentAttributeVideo(8.0, 240, 240, round_message=True)],
    ),
    "gif": (
        "video/mp4",
        120_000,
        [types.DocumentAttributeAnimated(), types.DocumentAttributeVideo(3.0, 320, 240)],
    ),
    "audio": (
        "audio/mpeg",
        3_000_000,
        [types.DocumentAttributeAudio(180, title="Song", performer="Band")],
    ),
    "voice": ("audio/ogg", 20_000, [types.DocumentAttributeAudio(6, voice=True)]),
    "sticker": (
        "image/webp",
        15_000,
        [types.DocumentAttributeSticker("🙂", types.InputStickerSetEmpty())],
    ),
}

#: The kinds ``post(..., media=...)`` accepts.
MEDIA_KINDS: tuple[str, ...] = ("photo", "location", *_DOCUMENTS)


def check_media_kind(kind: str | None) -> None:
    """Raise ValueError unless ``kind`` is None or one of MEDIA_KINDS."""
    if kind is not None and kind not in MEDIA_KINDS:
        raise ValueError(f"media must be one of {', '.join(MEDIA_KINDS)}")


def media_view(kind: str, media_id: int, date: int, dc_id: int) -> TLObject:
    """The MessageMedia of a post of this kind; ``media_id`` makes its photo/document id,
    ``dc_id`` the data center its file would live in.

    Raises ValueError for an unknown kind.
    """
    check_media_kind(kind)
    when = datetime.fromtimestamp(date, UTC)
    if kind == "photo":
        sizes = [types.PhotoSize("m", 320, 240, 12_000), types.PhotoSize("x", 800, 600, 60_000)]
        photo = types.Photo(media_id, media_id ^ 0x5A5A, b"", when, sizes, dc_id)
        return types.MessageMediaPhoto(photo=photo)
    if kind == "location":
        return types.MessageMediaGeo(types.GeoPoint(long=13.4, lat=52.5, access_hash=media_id))
    mime, size, attributes = _DOCUMENTS[kind]
    document = types.Document(
        media_id, media_id ^ 0x5A5A, b"", when, mime, size, dc_id, list(attributes)
    )
    return types.MessageMediaDocument(
        document=document,
        video=kind in ("video", "video_note") or None,
        round=kind == "video_note" or None,
        voice=kind == "voice" or None,
    )
