"""MTProto TCP transports, server side, auto-detected per connection.

Supported: full (length, seq, crc32), intermediate (``0xeeeeeeee``), padded intermediate
(``0xdddddddd``), abridged (``0xef``) and obfuscated2 wrapping abridged / intermediate /
padded intermediate (Telethon's ``ConnectionTcpObfuscated``). What the client sends first
decides: one ``0xef`` byte, four ``0xee`` / ``0xdd`` bytes, a full-transport header
(whose sequence number, the second int, is 0 for the first packet), or else a 64-byte
obfuscation header, which by construction never has zeros in bytes 4..8.
"""

from __future__ import annotations

import abc
import asyncio
import os
import struct
from zlib import crc32

from telethon.crypto import AESModeCTR

# Refuse absurd lengths instead of trying to buffer them (Telegram's own limit is ~1 MB
# per container; uploads are split into parts far smaller than this).
MAX_PACKET = 16 * 1024 * 1024

ABRIDGED_TAG = b"\xef"
INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
PADDED_INTERMEDIATE_TAG = b"\xdd\xdd\xdd\xdd"
OBFUSCATED_ABRIDGED_TAG = b"\xef\xef\xef\xef"


class TransportError(Exception):
    """The byte stream does not follow the transport; the connection must be closed."""


class _Stream(abc.ABC):
    """Reads exact byte counts from the client, undoing any obfuscation."""

    @abc.abstractmethod
    async def readexactly(self, n: int) -> bytes:
        """``n`` bytes; raises asyncio.IncompleteReadError when the peer closes."""


class _PlainStream(_Stream):
    def __init__(self, reader: asyncio.StreamReader, prefix: bytes = b"") -> None:
        self._reader = reader
        self._prefix = prefix

    async def readexactly(self, n: int) -> bytes:
        if not self._prefix:
            return await self._reader.readexactly(n)
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(head) == n:
            return head
        return head + await self._reader.readexactly(n - len(head))


class _ObfuscatedStream(_Stream):
    def __init__(self, reader: asyncio.StreamReader, decryptor: AESModeCTR) -> None:
        self._reader = reader
        self._decryptor = decryptor

    async def readexactly(self, n: int) -> bytes:
        return self._decryptor.encrypt(await self._reader.readexactly(n))


class _Codec(abc.ABC):
    """Packet framing inside the (possibly obfuscated) byte stream."""

    name: str

    @abc.abstractmethod
    async def read_packet(self, stream: _Stream) -> bytes:
        """One packet's payload; raises TransportError on malformed framing."""

    @abc.abstractmethod
    def encode(self, payload: bytes) -> bytes:
        """The framed bytes for one outgoing payload (stateful: call in sending order)."""


def _check_length(length: int) -> int:
    if length < 0 or length > MAX_PACKET:
        raise TransportError(f"packet length {length} out of range")
    return length


class _FullCodec(_Codec):
    name = "full"

    def __init__(self) -> None:
        self._recv_seq = 0
        self._send_seq = 0

    async def read_packet(self, stream: _Stream) -> bytes:
        header = await stream.readexactly(8)
        length, seq = struct.unpack("<ii", header)
        if length < 12:
            raise TransportError(f"full transport packet length {length} too small")
        rest = await stream.readexactly(_check_length(length) - 8)
        payload, checksum = rest[:-4], struct.unpack("<I", rest[-4:])[0]
        if crc32(header + payload) != checksum:
            raise TransportError("full transport crc32 mismatch")
        if seq != self._recv_seq:
            raise TransportError(f"full transport seq {seq}, expected {self._recv_seq}")
        self._recv_seq += 1
        return payload

    def encode(self, payload: bytes) -> bytes:
        data = struct.pack("<ii", len(payload) + 12, self._send_seq) + payload
        self._send_seq += 1
        return data + struct.pack("<I", crc32(data))


class _IntermediateCodec(_Codec):
    name = "intermediate"

    async def read_packet(self, stream: _Stream) -> bytes:
        # The top bit asks for a quick ack, which the sandbox does not send.
        length = struct.unpack("<I", await stream.readexactly(4))[0] & 0x7FFFFFFF
        return await stream.readexactly(_check_length(length))

    def encode(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload


class _PaddedIntermediateCodec(_IntermediateCodec):
    name = "padded_intermediate"

    async def read_packet(self, stream: _Stream) -> bytes:
        packet = await super().read_packet(stream)
        # MTProto payloads are multiples of 4 bytes; anything beyond is random padding.
        return packet[: len(packet) - len(packet) % 4]

    def encode(self, payload: bytes) -> bytes:
        return super().encode(payload + os.urandom(os.urandom(1)[0] % 4))


class _AbridgedCodec(_Codec):
    name = "abridged"

    async def read_packet(self, stream: _Stream) -> bytes:
        first = (await stream.readexactly(1))[0] & 0x7F  # top bit: quick ack request
        if first == 0x7F:
            first = int.from_bytes(await stream.readexactly(3), "little")
        return await stream.readexactly(_check_length(first * 4))

    def encode(self, payload: bytes) -> bytes:
        words = len(payload) // 4
        if words < 0x7F:
            return bytes((words,)) + payload
        return b"\x7f" + words.to_bytes(3, "little") + payload


_OBFUSCATED_CODECS: dict[bytes, type[_Codec]] = {
    OBFUSCATED_ABRIDGED_TAG: _AbridgedCodec,
    INTERMEDIATE_TAG: _IntermediateCodec,
    PADDED_INTERMEDIATE_TAG: _PaddedIntermediateCodec,
}


class Transport:
    """One client connection's framing, both directions.

    ``send`` and ``send_error`` only buffer (asyncio's writer); call ``drain`` to apply
    back-pressure. Outgoing framing is stateful (sequence numbers, AES-CTR), so all writes
    for a connection must go through one Transport, in order.
    """

    def __init__(
        self,
        codec: _Codec,
        stream: _Stream,
        writer: asyncio.StreamWriter,
        encryptor: AESModeCTR | None = None,
    ) -> None:
        self._codec = codec
        self._stream = stream
        self._writer = writer
        self._encryptor = encryptor
        self.name = codec.name if encryptor is None else f"obfuscated_{codec.name}"

    async def read_packet(self) -> bytes:
        """The next payload. Raises TransportError on bad framing and
        asyncio.IncompleteReadError when the client closes."""
        return await self._codec.read_packet(self._stream)

    def send(self, payload: bytes) -> None:
        """Frame and buffer one payload."""
        data = self._codec.encode(payload)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        self._writer.write(data)

    def send_error(self, code: int) -> None:
        """Buffer a transport error, a 4-byte packet holding ``-code`` (404 -> -404)."""
        self.send(struct.pack("<i", -code))

    async def drain(self) -> None:
        """Wait until the buffered bytes are handed to the OS (raises on a dead socket)."""
        await self._writer.drain()


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Transport:
    """Detect the transport from the client's first bytes and return it.

    Raises TransportError for anything that is not an MTProto TCP transport (HTTP
    included) and asyncio.IncompleteReadError when the client closes first.
    """
    first = await reader.readexactly(1)
    if first == ABRIDGED_TAG:
        return Transport(_AbridgedCodec(), _PlainStream(reader), writer)
    head = first + await reader.readexactly(3)
    if head == INTERMEDIATE_TAG:
        return Transport(_IntermediateCodec(), _PlainStream(reader), writer)
    if head == PADDED_INTERMEDIATE_TAG:
        return Transport(_PaddedIntermediateCodec(), _PlainStream(reader), writer)
    if head in (b"POST", b"GET ", b"HEAD", b"OPTI"):
        raise TransportError("HTTP transport is not supported")
    head += await reader.readexactly(4)
    if head[4:8] == b"\x00\x00\x00\x00":
        # A full-transport packet with seq 0; the 8 bytes read are its header.
        return Transport(_FullCodec(), _PlainStream(reader, prefix=head), writer)
    return await _accept_obfuscated(head + await reader.readexactly(56), reader, writer)


async def _accept_obfuscated(
    header: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Transport:
    # The client encrypts with key/iv from bytes 8..56 and decrypts with the same bytes
    # reversed; the server mirrors that. The header itself went through the client's
    # encryptor, so our decryptor must consume it too to stay in step.
    reverse = header[55:7:-1]
    decryptor = AESModeCTR(header[8:40], header[40:56])
    encryptor = AESModeCTR(reverse[:32], reverse[32:48])
    tag = decryptor.encrypt(header)[56:60]
    codec = _OBFUSCATED_CODECS.get(tag)
    if codec is None:
        raise TransportError("unknown obfuscated transport tag")
    return Transport(codec(), _ObfuscatedStream(reader, decryptor), writer, encryptor)
