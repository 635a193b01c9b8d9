"""The sandbox core's building blocks, checked against Telethon's own client-side code.

Each test pairs our server side with the matching Telethon piece (its codecs, its
MTProtoState, its fingerprint, its result readers), so "it round-trips" means "the real
client would accept it".
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import struct
import time
from collections import defaultdict
from pathlib import Path

import pytest
import rsa
import telethon.crypto.rsa as telethon_rsa
from telethon.crypto import AuthKey, Factorization
from telethon.extensions import BinaryReader
from telethon.network.connection.tcpabridged import AbridgedPacketCodec
from telethon.network.connection.tcpfull import FullPacketCodec
from telethon.network.connection.tcpintermediate import (
    IntermediatePacketCodec,
    RandomizedIntermediatePacketCodec,
)
from telethon.network.connection.tcpobfuscated import ObfuscatedIO
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions, types
from telethon.tl.core import RpcResult
from telethon.tl.functions.help import GetConfigRequest

from sandbox import Sandbox, keys, mtproto, transport
from sandbox.handshake import Handshake, HandshakeError
from sandbox.keys import SandboxKey


def _small_key() -> rsa.PrivateKey:
    # 512 bits: enough to check loading and fingerprints without seconds of keygen.
    return rsa.newkeys(512)[1]


# region keys


def test_fingerprint_matches_telethon() -> None:
    key = SandboxKey(_small_key())
    telethon_rsa.add_key(key.public_pem.decode(), old=False)
    assert key.fingerprint in telethon_rsa._server_keys  # noqa: SLF001


def test_key_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    # The real key size: OpenSSL makes it in a fraction of a second (it refuses < 1024 bits).
    first = SandboxKey.load_or_create(tmp_path / "data")
    private = tmp_path / "data" / keys.PRIVATE_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert first.public_key_path is not None
    assert first.public_key_path.read_bytes() == first.public_pem
    again = SandboxKey.load_or_create(tmp_path / "data")
    assert again.private == first.private and again.fingerprint == first.fingerprint


def test_raw_decrypt_inverts_telethon_encrypt(sandbox: Sandbox) -> None:
    # Needs the real 2048-bit key: Telethon pads its plaintext to 255 bytes.
    key = sandbox.key
    telethon_rsa.add_key(key.public_pem.decode(), old=False)
    block = telethon_rsa.encrypt(key.fingerprint, b"inner data")
    assert block is not None
    plain = key.decrypt_raw(block)
    assert plain[0] == 0 and plain[21:31] == b"inner data"
    with pytest.raises(ValueError):
        key.decrypt_raw(b"\x00" * 10)


def test_pq_is_positive_for_telethon_and_factorises() -> None:
    hs = Handshake(SandboxKey(_small_key()), lambda key_id: False)
    for nonce in range(200):
        res_pq, new_key = hs.answer(functions.ReqPqMultiRequest(nonce=nonce))
        assert new_key is None and res_pq.nonce == nonce
        # Telethon reads pq as a signed big-endian number.
        pq = int.from_bytes(res_pq.pq, "big", signed=True)
        p, q = Factorization.factorize(pq)
        # Telethon's factorisation is randomised and now and then trivial (1, pq); the
        # sandbox accepts any exact one (see Handshake._server_dh_params).
        assert p * q == pq


def test_handshake_rejects_a_foreign_exchange() -> None:
    hs = Handshake(SandboxKey(_small_key()), lambda key_id: False)
    hs.answer(functions.ReqPqMultiRequest(nonce=1))
    with pytest.raises(HandshakeError):
        hs.answer(
            functions.ReqDHParamsRequest(
                nonce=2,
                server_nonce=0,
                p=b"",
                q=b"",
                public_key_fingerprint=0,
                encrypted_data=b"",
            )
        )


# endregion

# region transports


class _Sink:
    """Collects what a Transport writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


_TELETHON_CODECS = {
    "full": FullPacketCodec,
    "intermediate": IntermediatePacketCodec,
    "abridged": AbridgedPacketCodec,
}


@pytest.mark.parametrize("name", list(_TELETHON_CODECS))
async def test_transport_both_directions(name: str) -> None:
    client = _TELETHON_CODECS[name](None)
    payloads = [os.urandom(n * 4) for n in (2, 126, 127, 128, 2000)]
    wire = (client.tag or b"") + b"".join(client.encode_packet(p) for p in payloads)
    sink = _Sink()
    server = await transport.accept(_reader(wire), sink)
    assert server.name == name
    assert [await server.read_packet() for _ in payloads] == payloads
    for payload in payloads:
        server.send(payload)
    server.send_error(404)
    back = _reader(bytes(sink.data))
    assert [await client.read_packet(back) for _ in payloads] == payloads
    # A transport error is a packet holding -404, which Telethon turns into code 404.
    assert struct.unpack("<i", await client.read_packet(back)) == (-404,)


async def test_padded_intermediate_strips_padding() -> None:
    client = RandomizedIntermediatePacketCodec(None)
    payloads = [os.urandom(n * 4) for n in (3, 50, 300)]
    wire = transport.PADDED_INTERMEDIATE_TAG + b"".join(client.encode_packet(p) for p in payloads)
    server = await transport.accept(_reader(wire), _Sink())
    assert [await server.read_packet() for _ in payloads] == payloads


@pytest.mark.parametrize(
    ("codec_type", "name"),
    [
        (AbridgedPacketCodec, "obfuscated_abridged"),
        (IntermediatePacketCodec, "obfuscated_intermediate"),
        (RandomizedIntermediatePacketCodec, "obfuscated_padded_intermediate"),
    ],
)
async def test_obfuscated_both_directions(codec_type: type, name: str) -> None:
    header, encryptor, decryptor = ObfuscatedIO.init_header(codec_type)
    codec = codec_type(None)
    payloads = [os.urandom(n * 4) for n in (2, 200, 1000)]
    wire = bytes(header) + encryptor.encrypt(b"".join(codec.encode_packet(p) for p in payloads))
    sink = _Sink()
    server = await transport.accept(_reader(wire), sink)
    assert server.name == name
    assert [await server.read_packet() for _ in payloads] == payloads
    for payload in payloads:
        server.send(payload)
    back = _reader(decryptor.encrypt(bytes(sink.data)))
    assert [await codec.read_packet(back) for _ in payloads] == payloads


async def test_transport_rejects_http_and_bad_crc() -> None:
    with pytest.raises(transport.TransportError):
        await transport.accept(_reader(b"POST / HTTP/1.1\r\n"), _Sink())
    packet = bytearray(FullPacketCodec(None).encode_packet(b"\x00" * 8))
    packet[-1] ^= 0xFF
    server = await transport.accept(_reader(bytes(packet)), _Sink())
    with pytest.raises(transport.TransportError):
        await server.read_packet()


# endregion

# region encrypted messages


def _client_state(key: AuthKey) -> MTProtoState:
    loggers = defaultdict(lambda: logging.getLogger("test_core_units"))
    return MTProtoState(key, loggers=loggers)


@pytest.mark.parametrize("key_len", [256, 255], ids=["256-byte key", "255-byte key"])
def test_encryption_matches_telethon(key_len: int) -> None:
    key = AuthKey(b"\x01" + os.urandom(key_len - 1))
    state = _client_state(key)
    state.salt = 1234

    body = bytes(GetConfigRequest())
    header = struct.pack("<qii", 8 << 32, 1, len(body))  # msg_id, seq_no, length
    packet = state.encrypt_message_data(header + body)
    plain = mtproto.decrypt(key.key, packet)
    assert (plain.salt, plain.session_id, plain.msg_id, plain.seq_no, plain.body) == (
        1234,
        state.id,
        8 << 32,
        1,
        body,
    )

    pong = bytes(types.Pong(msg_id=1, ping_id=2))
    msg_id = mtproto.ServerMsgIds().next(response=True)
    reply = mtproto.encrypt(key.key, key.key_id, 99, state.id, msg_id, 1, pong)
    message = state.decrypt_message_data(reply)
    assert message is not None and message.msg_id == msg_id
    assert isinstance(message.obj, types.Pong) and message.obj.ping_id == 2


def test_tampered_message_is_rejected() -> None:
    key = AuthKey(os.urandom(256))
    packet = bytearray(_client_state(key).encrypt_message_data(b"\x00" * 20))
    packet[-1] ^= 1
    with pytest.raises(mtproto.ProtocolError):
        mtproto.decrypt(key.key, bytes(packet))


def test_server_msg_ids_are_monotonic_odd_and_current() -> None:
    ids = mtproto.ServerMsgIds()
    produced = [ids.next(response=bool(i % 2)) for i in range(1000)]
    assert produced == sorted(set(produced))
    assert all(m % 4 == (1 if i % 2 else 3) for i, m in enumerate(produced))
    assert abs((produced[-1] >> 32) - time.time()) < 5


def test_client_msg_id_window() -> None:
    now = time.time()
    ok = int(now) << 32
    assert mtproto.client_msg_id_error(ok, now) is None
    assert mtproto.client_msg_id_error(ok + 1, now) == mtproto.BAD_MSG_ID_BITS
    assert mtproto.client_msg_id_error(int(now - 400) << 32, now) == mtproto.BAD_MSG_ID_TOO_LOW
    assert mtproto.client_msg_id_error(int(now + 60) << 32, now) == mtproto.BAD_MSG_ID_TOO_HIGH


def test_seq_no() -> None:
    seq = mtproto.SeqNo()
    assert [seq.next(True), seq.next(False), seq.next(True), seq.next(False)] == [1, 2, 3, 4]


def test_salts_rotate_with_overlap() -> None:
    key = os.urandom(256)
    now = 1_000_000 * mtproto.SALT_PERIOD + 10
    current = mtproto.salt_for(key, mtproto.current_period(now))
    assert current != 0 and mtproto.salt_is_valid(key, current, now)
    assert mtproto.salt_is_valid(key, current, now + mtproto.SALT_PERIOD)
    assert not mtproto.salt_is_valid(key, current, now + 2 * mtproto.SALT_PERIOD)
    assert not mtproto.salt_is_valid(key, 0, now)
    salts = mtproto.future_salts(key, 3, now)
    assert salts[0].salt == current and len({s.salt for s in salts}) == 3


# endregion

# region bodies


def test_container_round_trip() -> None:
    items = [(4 << 32, 1, bytes(GetConfigRequest())), (8 << 32, 2, bytes(types.MsgsAck([1])))]
    split = mtproto.split_container(mtproto.container(items))
    assert split == [mtproto.Inner(*item) for item in items]
    assert mtproto.split_container(bytes(GetConfigRequest())) is None
    with pytest.raises(mtproto.ProtocolError):
        mtproto.split_container(mtproto.container(items)[:-3])


def test_unwrap_nested_wrappers() -> None:
    init = functions.InitConnectionRequest(
        api_id=1,
        device_model="d",
        system_version="s",
        app_version="a",
        system_lang_code="en",
        lang_pack="",
        lang_code="en",
        query=functions.InvokeAfterMsgRequest(msg_id=42, query=GetConfigRequest()),
    )
    wrapped = functions.InvokeWithLayerRequest(
        layer=201, query=functions.InvokeWithoutUpdatesRequest(query=init)
    )
    parsed = mtproto.read_object(bytes(wrapped))
    out = mtproto.unwrap(parsed)
    assert isinstance(out.query, GetConfigRequest)
    assert (out.layer, out.without_updates, out.after_msg_ids) == (201, True, [42])
    assert out.init is not None and out.init.api_id == 1


def test_gzip_packed_requests_are_unpacked() -> None:
    from telethon.tl.core import GzipPacked

    body = bytes(GzipPacked(bytes(GetConfigRequest())))
    assert isinstance(mtproto.read_object(body), GetConfigRequest)


def test_serialize_result_matches_telethon_readers() -> None:
    def round_trip(query: object, result: object) -> object:
        data = mtproto.serialize_result(query, result)
        return query.read_result(BinaryReader(data))

    assert round_trip(functions.auth.LogOutRequest(), True) is True
    assert round_trip(functions.auth.LogOutRequest(), False) is False
    ints = functions.contacts.GetContactIDsRequest(hash=0)
    assert round_trip(ints, [1, 2, 3]) == [1, 2, 3]
    longs = functions.messages.ReceivedQueueRequest(max_qts=1)
    assert round_trip(longs, [1 << 40, 7]) == [1 << 40, 7]
    users = round_trip(
        functions.users.GetUsersRequest(id=[]), [types.UserEmpty(id=5), types.UserEmpty(id=6)]
    )
    assert [u.id for u in users] == [5, 6]
    with pytest.raises(TypeError):
        mtproto.serialize_result(GetConfigRequest(), object())
    broken = types.Message(id=1, peer_id=types.PeerUser(1), date=None, message="x", views=5)
    with pytest.raises(AssertionError):
        mtproto.serialize_result(GetConfigRequest(), broken)


def test_big_results_travel_gzip_packed() -> None:
    big = bytes(types.UserEmpty(id=1)) * 200
    packet = mtproto.rpc_result(77, big)
    assert len(packet) < len(big)
    result = RpcResult.from_reader(BinaryReader(packet[4:]))
    assert result.req_msg_id == 77 and result.body == big
    small = mtproto.rpc_result(78, bytes(types.UserEmpty(id=1)))
    assert RpcResult.from_reader(BinaryReader(small[4:])).body == bytes(types.UserEmpty(id=1))


def test_rpc_error_reaches_telethon() -> None:
    packet = mtproto.rpc_error(5, 420, "FLOOD_WAIT_3")
    result = RpcResult.from_reader(BinaryReader(packet[4:]))
    assert result.req_msg_id == 5 and result.error.error_message == "FLOOD_WAIT_3"


# endregion
