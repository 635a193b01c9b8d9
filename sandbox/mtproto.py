"""The encrypted MTProto 2.0 session layer, server side, without any I/O.

Everything here is a pure function or a small value type: encryption and decryption of
messages (https://core.telegram.org/mtproto/description), server message ids, seq_no,
salts, containers, gzip, the query wrappers, and turning a method's return value into the
bytes of an ``rpc_result``. ``sandbox/server.py`` drives it.
"""

from __future__ import annotations

import functools
import os
import struct
import time
from dataclasses import dataclass, field
from hashlib import sha256

from telethon.crypto import AES
from telethon.extensions import BinaryReader
from telethon.tl.core import GzipPacked
from telethon.tl.functions import (
    InitConnectionRequest,
    InvokeAfterMsgRequest,
    InvokeAfterMsgsRequest,
    InvokeWithLayerRequest,
    InvokeWithoutUpdatesRequest,
)
from telethon.tl.tlobject import TLObject, TLRequest
from telethon.tl.types import FutureSalt
from telethon.tl.types import RpcError as TLRpcError

RPC_RESULT_ID = 0xF35C6D01
CONTAINER_ID = 0x73F1F8DC
GZIP_PACKED_ID = 0x3072CFA1
VECTOR_ID = 0x1CB5C415
BOOL_TRUE_ID = 0x997275B5
BOOL_FALSE_ID = 0xBC799737

# The client's clock window for our msg ids is -300 s / +30 s; we apply the same window
# to theirs (https://core.telegram.org/mtproto/service_messages_about_messages).
MSG_ID_TOO_OLD = 300
MSG_ID_TOO_NEW = 30
# bad_msg_notification error codes.
BAD_MSG_ID_TOO_LOW = 16
BAD_MSG_ID_TOO_HIGH = 17
BAD_MSG_ID_BITS = 18
BAD_SERVER_SALT = 48

SALT_PERIOD = 3600  # seconds a salt is issued for; the previous one stays valid as well
GZIP_THRESHOLD = 512  # results at least this big are sent gzip_packed when that is smaller
MAX_CONTAINER_BYTES = 1_000_000  # under Telegram's 1044456-byte container payload limit
MAX_CONTAINER_MESSAGES = 100

_MIN_PADDING, _MAX_PADDING = 12, 1024


class ProtocolError(Exception):
    """A message that cannot be decrypted or framed; the connection should be closed."""


@dataclass(frozen=True)
class Plaintext:
    """A decrypted client message: the header fields and the body bytes."""

    salt: int
    session_id: int
    msg_id: int
    seq_no: int
    body: bytes


@dataclass(frozen=True)
class Inner:
    """One message inside a container (or a whole message when there is none)."""

    msg_id: int
    seq_no: int
    body: bytes


@dataclass(frozen=True)
class Outgoing:
    """One server message before msg_id and seq_no are given to it.

    ``response`` is True for answers to a client message (msg_id mod 4 == 1) and False
    for unsolicited ones (mod 4 == 3). ``content_related`` decides the seq_no parity.
    """

    body: bytes
    response: bool
    content_related: bool = True


# region encryption


def _aes_key_iv(auth_key: bytes, msg_key: bytes, x: int) -> tuple[bytes, bytes]:
    # x = 0 client->server, 8 server->client (MTProto 2.0).
    a = sha256(msg_key + auth_key[x : x + 36]).digest()
    b = sha256(auth_key[40 + x : 76 + x] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def decrypt(auth_key: bytes, packet: bytes) -> Plaintext:
    """Decrypt a client message (``packet`` includes the 8-byte auth_key_id).

    Raises ProtocolError when msg_key does not match, the length is impossible, or the
    padding is outside the 12..1024 bytes MTProto 2.0 requires.
    """
    msg_key, cipher = packet[8:24], packet[24:]
    if len(msg_key) != 16 or not cipher or len(cipher) % 16:
        raise ProtocolError("encrypted message is not whole AES blocks")
    key, iv = _aes_key_iv(auth_key, msg_key, 0)
    plain = AES.decrypt_ige(cipher, key, iv)
    if sha256(auth_key[88:120] + plain).digest()[8:24] != msg_key:
        raise ProtocolError("msg_key mismatch")
    if len(plain) < 32:
        raise ProtocolError("encrypted message too short")
    salt, session_id, msg_id, seq_no, length = struct.unpack_from("<qqqii", plain)
    padding = len(plain) - 32 - length
    if length < 0 or length % 4 or not _MIN_PADDING <= padding <= _MAX_PADDING:
        raise ProtocolError("encrypted message length or padding out of range")
    return Plaintext(salt, session_id, msg_id, seq_no, plain[32 : 32 + length])


def encrypt(
    auth_key: bytes,
    key_id: int,
    salt: int,
    session_id: int,
    msg_id: int,
    seq_no: int,
    body: bytes,
) -> bytes:
    """Encrypt one server message for the client (auth_key_id + msg_key + AES-IGE)."""
    plain = struct.pack("<qqqii", salt, session_id, msg_id, seq_no, len(body)) + body
    plain += os.urandom(_MIN_PADDING + (-(len(plain) + _MIN_PADDING) % 16))
    msg_key = sha256(auth_key[96:128] + plain).digest()[8:24]
    key, iv = _aes_key_iv(auth_key, msg_key, 8)
    return struct.pack("<Q", key_id) + msg_key + AES.encrypt_ige(plain, key, iv)


# endregion

# region message ids, seq_no, salts


class ServerMsgIds:
    """Server msg ids: about unix time * 2^32, strictly increasing, mod 4 == 1 or 3."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, response: bool) -> int:
        """A new id; ``response`` picks mod 4 == 1 (answer) or 3 (unsolicited)."""
        quarter = int(time.time() * 2**32) >> 2
        quarter = max(quarter, self._last + 1)
        self._last = quarter
        return (quarter << 2) | (1 if response else 3)


def client_msg_id_error(msg_id: int, now: float | None = None) -> int | None:
    """The bad_msg_notification code for a client msg_id, or None when it is acceptable."""
    if msg_id % 4:
        return BAD_MSG_ID_BITS
    sent = msg_id >> 32
    now = time.time() if now is None else now
    if sent < now - MSG_ID_TOO_OLD:
        return BAD_MSG_ID_TOO_LOW
    if sent > now + MSG_ID_TOO_NEW:
        return BAD_MSG_ID_TOO_HIGH
    return None


@dataclass
class SeqNo:
    """seq_no for one direction of a session: odd and increasing for content messages."""

    content_sent: int = 0

    def next(self, content_related: bool) -> int:
        """The seq_no of the next message."""
        if not content_related:
            return self.content_sent * 2
        self.content_sent += 1
        return self.content_sent * 2 - 1


def salt_for(auth_key: bytes, period: int) -> int:
    """The server salt of ``auth_key`` for one SALT_PERIOD-long period.

    Derived from the key, so salts need no storage and survive a restart; a one-way hash,
    so a salt reveals nothing of the key.
    """
    digest = sha256(b"sandbox salt" + period.to_bytes(8, "little") + auth_key).digest()
    return int.from_bytes(digest[:8], "little", signed=True)


def current_period(now: float | None = None) -> int:
    """The salt period ``now`` falls in."""
    return int(time.time() if now is None else now) // SALT_PERIOD


def salt_is_valid(auth_key: bytes, salt: int, now: float | None = None) -> bool:
    """True for the current period's salt and for the previous period's."""
    period = current_period(now)
    return salt in (salt_for(auth_key, period), salt_for(auth_key, period - 1))


def future_salts(auth_key: bytes, count: int, now: float | None = None) -> list[FutureSalt]:
    """``count`` salts (1..64) starting with the current one, with their validity."""
    first = current_period(now)
    return [
        FutureSalt(
            valid_since=period * SALT_PERIOD,
            valid_until=(period + 2) * SALT_PERIOD,
            salt=salt_for(auth_key, period),
        )
        for period in range(first, first + max(1, min(count, 64)))
    ]


# endregion

# region bodies


def split_container(body: bytes) -> list[Inner] | None:
    """The messages of a msg_container, or None when ``body`` is not a container.

    Inner bodies are kept as bytes so one unparsable query does not spoil the others.
    Raises ProtocolError for a container whose lengths do not add up.
    """
    if len(body) < 8 or struct.unpack_from("<I", body)[0] != CONTAINER_ID:
        return None
    count = struct.unpack_from("<i", body, 4)[0]
    messages, offset = [], 8
    for _ in range(count):
        if offset + 16 > len(body):
            raise ProtocolError("truncated msg_container")
        msg_id, seq_no, length = struct.unpack_from("<qii", body, offset)
        offset += 16
        if length < 0 or offset + length > len(body):
            raise ProtocolError("msg_container item overruns the container")
        messages.append(Inner(msg_id, seq_no, body[offset : offset + length]))
        offset += length
    return messages


def gunzip(body: bytes) -> bytes:
    """``body`` with any gzip_packed layers removed (raises on corrupt gzip data)."""
    while constructor_of(body) == GZIP_PACKED_ID:
        body = GzipPacked.read(BinaryReader(body))
    return body


def read_object(body: bytes) -> TLObject:
    """Parse one TL object with Telethon's reader, unpacking gzip_packed.

    Raises telethon.errors.TypeNotFoundError for an unknown constructor and other
    exceptions (BufferError, struct.error, zlib errors...) for malformed data.
    """
    return BinaryReader(gunzip(body)).tgread_object()


def constructor_of(body: bytes) -> int | None:
    """The first constructor id in ``body``, if there are 4 bytes to read."""
    return struct.unpack_from("<I", body)[0] if len(body) >= 4 else None


@dataclass
class Unwrapped:
    """A query with its invokeWithLayer / initConnection / invoke* wrappers removed."""

    query: TLObject
    layer: int | None = None
    init: InitConnectionRequest | None = None
    without_updates: bool = False
    after_msg_ids: list[int] = field(default_factory=list)


def unwrap(query: TLObject) -> Unwrapped:
    """Peel the wrappers off ``query``, in whatever order and nesting they come."""
    out = Unwrapped(query)
    while True:
        q = out.query
        if isinstance(q, InvokeWithLayerRequest):
            out.layer = q.layer
        elif isinstance(q, InitConnectionRequest):
            out.init = q
        elif isinstance(q, InvokeWithoutUpdatesRequest):
            out.without_updates = True
        elif isinstance(q, InvokeAfterMsgRequest):
            out.after_msg_ids.append(q.msg_id)
        elif isinstance(q, InvokeAfterMsgsRequest):
            out.after_msg_ids.extend(q.msg_ids)
        elif isinstance(q, GzipPacked):
            out.query = read_object(q.data)
            continue
        else:
            return out
        out.query = q.query


@functools.cache
def _vector_int_format(request_type: type[TLRequest]) -> str:
    # Vector<int> and Vector<long> results look the same in Python (a list of ints).
    # Ask the request class itself: feed its read_result a vector holding one long and
    # see whether it read 4 bytes of it or 8.
    probe = struct.pack("<Iiq", VECTOR_ID, 1, (1 << 32) | 2)
    try:
        value = request_type.read_result(BinaryReader(probe))
    except Exception:
        return "<q"
    return "<i" if value == [2] else "<q"


def serialize_result(query: TLObject, result: object) -> bytes:
    """The TL bytes of a method's return value.

    Handles TL objects, Python bools (Bool) and lists (Vector<T>, including Vector<int>
    and Vector<long>, told apart by the query's own ``read_result``). Raises whatever
    Telethon's serialisers raise (e.g. AssertionError for inconsistent flag groups) and
    TypeError for a value that has no TL form.
    """
    if result is True:
        return struct.pack("<I", BOOL_TRUE_ID)
    if result is False:
        return struct.pack("<I", BOOL_FALSE_ID)
    if isinstance(result, TLObject):
        return bytes(result)
    if isinstance(result, list):
        parts = [struct.pack("<Ii", VECTOR_ID, len(result))]
        for item in result:
            if isinstance(item, TLObject):
                parts.append(bytes(item))
            elif isinstance(item, int) and not isinstance(item, bool):
                parts.append(struct.pack(_vector_int_format(type(query)), item))
            elif isinstance(item, str | bytes):
                parts.append(TLObject.serialize_bytes(item))
            else:
                raise TypeError(f"no TL form for a vector of {type(item).__name__}")
        return b"".join(parts)
    raise TypeError(f"no TL form for a result of type {type(result).__name__}")


def maybe_gzip(body: bytes) -> bytes:
    """``body`` as gzip_packed when it is big and that makes it smaller."""
    if len(body) < GZIP_THRESHOLD:
        return body
    packed = bytes(GzipPacked(body))
    return packed if len(packed) < len(body) else body


def rpc_result(req_msg_id: int, result: bytes) -> bytes:
    """An rpc_result carrying serialised ``result`` (gzip_packed when worthwhile)."""
    return struct.pack("<Iq", RPC_RESULT_ID, req_msg_id) + maybe_gzip(result)


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    """An rpc_result carrying ``rpc_error code message``."""
    error = TLRpcError(error_code=code, error_message=message)
    return struct.pack("<Iq", RPC_RESULT_ID, req_msg_id) + bytes(error)


def container(messages: list[tuple[int, int, bytes]]) -> bytes:
    """A msg_container body from ``(msg_id, seq_no, body)`` triples."""
    parts = [struct.pack("<Ii", CONTAINER_ID, len(messages))]
    for msg_id, seq_no, body in messages:
        parts.append(struct.pack("<qii", msg_id, seq_no, len(body)))
        parts.append(body)
    return b"".join(parts)


# endregion
