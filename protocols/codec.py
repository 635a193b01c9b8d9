"""The wire codec: one ZeroMQ frame = one protocol-version byte + one msgpack packet.

Guarantees: decoding never raises anything but :class:`FrameError`, whatever the bytes;
a ``FrameError`` carries the request id and sender whenever the header could be read, so
the peer can be answered ``BadRequest`` about the right request. Bodies are opened only by
the endpoint that owns the target (:func:`open_body`).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from protocols import broker, demo, errors, events, parser, session, store
from protocols.base import Message
from protocols.envelope import Envelope

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 1_048_576

BODY_TYPES: tuple[type[Message], ...] = (
    *errors.MESSAGES,
    *broker.MESSAGES,
    *events.MESSAGES,
    *session.MESSAGES,
    *store.MESSAGES,
    *parser.MESSAGES,
    *demo.MESSAGES,
)
Body = Union[BODY_TYPES]  # type: ignore[valid-type]  # noqa: UP007
Packet = Union[(Envelope, *broker.CONTROL)]  # type: ignore[valid-type]

_KNOWN_TYPES = frozenset(t.__name__ for t in BODY_TYPES)
_VERSION_BYTE = bytes([PROTOCOL_VERSION])


class FrameError(Exception):
    """A frame or body that cannot be accepted; ``reason`` says why, for a BadRequest."""

    def __init__(self, reason: str, request_id: str = "", sender: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id
        self.sender = sender


class _Tag(msgspec.Struct):
    type: str


class _Head(msgspec.Struct, tag="env"):
    id: str = ""
    sender: str = ""


_encoder = msgspec.msgpack.Encoder()
_packet_decoder = msgspec.msgpack.Decoder(Packet)
_body_decoder = msgspec.msgpack.Decoder(Body)
_tag_decoder = msgspec.msgpack.Decoder(_Tag)
_head_decoder = msgspec.msgpack.Decoder(_Head)
_json_body_decoder = msgspec.json.Decoder(Body)


def encode_packet(packet: Any) -> bytes:
    """One frame: the version byte followed by the msgpack packet."""
    return _VERSION_BYTE + _encoder.encode(packet)


def decode_packet(frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Any:
    """The packet in ``frame``.

    Raises :class:`FrameError` for an empty frame, a frame over ``max_bytes``, an unknown
    protocol version, malformed msgpack or an unknown packet type.
    """
    if not frame:
        raise FrameError("empty frame")
    version = frame[0]
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"unsupported protocol version {version}; this peer speaks {PROTOCOL_VERSION}",
            *_best_effort_head(frame),
        )
    if len(frame) > max_bytes:
        raise FrameError(
            f"frame of {len(frame)} bytes exceeds the limit of {max_bytes} bytes",
            *_best_effort_head(frame),
        )
    try:
        return _packet_decoder.decode(memoryview(frame)[1:])
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed packet: {exc}", *_best_effort_head(frame)) from None


def decode_event(frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message:
    """The event body in a bus frame (version byte + msgpack body).

    Raises :class:`FrameError` for a wrong version, an oversized frame or a bad body.
    """
    if not frame or frame[0] != PROTOCOL_VERSION:
        raise FrameError("event frame of an unsupported protocol version")
    if len(frame) > max_bytes:
        raise FrameError(f"event frame of {len(frame)} bytes exceeds {max_bytes} bytes")
    return open_body(memoryview(frame)[1:])


def _best_effort_head(frame: bytes) -> tuple[str, str]:
    """(request id, sender) of an envelope we refuse, or empty strings if unreadable."""
    try:
        head = _head_decoder.decode(memoryview(frame)[1:])
    except (msgspec.DecodeError, ValueError):
        return "", ""
    return head.id, head.sender


def pack_body(body: Message) -> msgspec.Raw:
    """The msgpack bytes of ``body``, ready to sit in an envelope."""
    return msgspec.Raw(_encoder.encode(body))


def body_type(raw: msgspec.Raw | bytes) -> str:
    """The ``type`` tag of the body in ``raw`` without opening the rest ("?" if unreadable)."""
    try:
        return _tag_decoder.decode(raw).type
    except (msgspec.DecodeError, ValueError):
        return "?"


def open_body(raw: msgspec.Raw | bytes) -> Message:
    """The typed body inside ``raw``.

    Raises :class:`FrameError` naming an unknown message type, or the field that failed
    validation, or malformed msgpack.
    """
    try:
        return _body_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise FrameError(_explain(raw, exc)) from None
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed body: {exc}") from None


def _explain(raw: msgspec.Raw | bytes, exc: msgspec.ValidationError) -> str:
    try:
        name = _tag_decoder.decode(raw).type
    except (msgspec.DecodeError, ValueError):
        return f"invalid body: {exc}"
    if name not in _KNOWN_TYPES:
        return f"unknown message type {name!r}"
    return f"invalid {name}: {exc}"


def body_from_json(text: str | bytes) -> Message:
    """A typed body from JSON such as ``{"type": "Echo", "text": "hi"}`` (command line).

    Stricter than the wire: a field the type does not have is refused, not ignored, since
    here it is a person's typo rather than a newer peer's addition. Raises
    :class:`FrameError` saying what is wrong (naming unknown fields and the known ones).
    """
    try:
        body = _json_body_decoder.decode(text)
    except msgspec.ValidationError as exc:
        try:
            name = msgspec.json.decode(text, type=_Tag).type
        except (msgspec.DecodeError, ValueError):
            raise FrameError(f"invalid message: {exc}") from None
        if name not in _KNOWN_TYPES:
            raise FrameError(f"unknown message type {name!r}") from None
        raise FrameError(f"invalid {name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    known = {f.encode_name for f in msgspec.structs.fields(body)}
    unknown = sorted(set(msgspec.json.decode(text, type=dict[str, Any])) - known - {"type"})
    if unknown:
        name = type(body).__name__
        fields = ", ".join(sorted(known)) or "none"
        listed = ", ".join(repr(f) for f in unknown)
        noun = "field" if len(unknown) == 1 else "fields"
        raise FrameError(f"{name} has no {noun} {listed} (its fields: {fields})")
    return body


def body_to_json(body: Message) -> bytes:
    """The JSON form of a body, ``type`` field included."""
    return msgspec.json.encode(body)
