"""Bad frames get BadRequest; the broker and the node go on serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zmq

from protocols import demo, errors
from protocols.codec import PROTOCOL_VERSION, decode_packet, encode_packet, open_body, pack_body
from protocols.envelope import Envelope, new_id
from runtime.client import Client
from tests.runtime.conftest import start_node
from tests.runtime.support import Proc, System

MAX_FRAME = 4096


@pytest.fixture
def raw(system: System, broker: Proc) -> Iterator[zmq.Socket]:
    """A bare DEALER socket on the broker, to send what no Client would."""
    sock = system.raw_dealer(b"raw-peer")
    yield sock
    sock.close()


@pytest.fixture
def node(system: System, broker: Proc) -> Proc:
    return start_node(system, "target")


def _answer(sock: zmq.Socket) -> Envelope:
    assert sock.poll(10_000), "no answer"
    packet = decode_packet(sock.recv())
    assert isinstance(packet, Envelope)
    return packet


def _bad_request(sock: zmq.Socket) -> tuple[str, str]:
    """(reply_to, message) of the BadRequest the peer was answered."""
    reply = _answer(sock)
    body = open_body(reply.body)
    assert isinstance(body, errors.BadRequest), body
    return reply.reply_to, body.message


def _echo(target: str = "echo", text: str = "ok", **fields: object) -> Envelope:
    return Envelope(
        id=new_id(),
        sender="raw-peer",
        target=target,
        body=pack_body(demo.Echo(text=text)),
        **fields,
    )


def _still_serving(client: Client) -> None:
    assert client.request("echo", demo.Echo(text="still here")) == demo.Echoed(text="still here")


def test_garbage_bytes(raw: zmq.Socket, node: Proc, client: Client) -> None:
    raw.send(b"\x01\xc1\xc1 not msgpack at all")
    _, message = _bad_request(raw)
    assert message.startswith("malformed packet")
    raw.send(b"")
    assert _bad_request(raw)[1] == "empty frame"
    _still_serving(client)


def test_several_frames_in_one_message(raw: zmq.Socket, node: Proc, client: Client) -> None:
    raw.send_multipart([encode_packet(_echo()), b"extra"])
    assert "expected 1 frame" in _bad_request(raw)[1]
    _still_serving(client)


def test_future_protocol_version(raw: zmq.Socket, node: Proc, client: Client) -> None:
    envelope = _echo()
    raw.send(bytes([PROTOCOL_VERSION + 1]) + encode_packet(envelope)[1:])
    reply_to, message = _bad_request(raw)
    assert reply_to == envelope.id
    assert f"unsupported protocol version {PROTOCOL_VERSION + 1}" in message
    _still_serving(client)


def test_unknown_packet_type(raw: zmq.Socket, node: Proc, client: Client) -> None:
    raw.send(bytes([PROTOCOL_VERSION]) + msgspec.msgpack.encode({"type": "teleport"}))
    assert "malformed packet" in _bad_request(raw)[1]
    _still_serving(client)


def test_unknown_message_type_reaches_the_node_and_is_refused(
    raw: zmq.Socket, node: Proc, client: Client
) -> None:
    envelope = _echo()
    envelope.body = msgspec.Raw(msgspec.msgpack.encode({"type": "LaunchRockets"}))
    raw.send(encode_packet(envelope))
    reply_to, message = _bad_request(raw)
    assert reply_to == envelope.id
    assert message == "unknown message type 'LaunchRockets'"
    _still_serving(client)


def test_invalid_field_is_refused(raw: zmq.Socket, node: Proc, client: Client) -> None:
    envelope = _echo()
    envelope.body = msgspec.Raw(msgspec.msgpack.encode({"type": "Increment", "by": "lots"}))
    raw.send(encode_packet(envelope))
    assert _bad_request(raw)[1] == "invalid Increment: Expected `int`, got `str` - at `$.by`"
    _still_serving(client)


def test_oversized_frame(tmp_path: Path) -> None:
    system = System(tmp_path)
    system.overrides["SWITCHBOARD__RUNTIME__MAX_FRAME_BYTES"] = str(MAX_FRAME)
    try:
        broker = system.run("--role", "broker", name="broker")
        start_node(system, "n")
        with system.client() as client:
            request_id = client.send("echo", demo.Echo(text="x" * (MAX_FRAME * 2)))
            reply = client.receive(10)
            assert reply is not None
            assert reply[0] == request_id
            assert isinstance(reply[1], errors.BadRequest)
            assert reply[1].message.endswith("exceeds the limit of 4096 bytes")
            _still_serving(client)
        assert broker.popen.poll() is None
    finally:
        system.stop_all()


def test_spoofed_sender_is_refused(raw: zmq.Socket, node: Proc, client: Client) -> None:
    envelope = Envelope(
        id=new_id(), sender="echo", target="echo", body=pack_body(demo.Echo(text="spoof"))
    )
    raw.send(encode_packet(envelope))
    assert "is not this peer's identity" in _bad_request(raw)[1]
    _still_serving(client)


def test_overlong_request_id_is_refused(raw: zmq.Socket, node: Proc, client: Client) -> None:
    envelope = _echo()
    envelope.id = "x" * 200
    raw.send(encode_packet(envelope))
    reply_to, message = _bad_request(raw)
    assert reply_to == envelope.id
    assert message == "request id longer than 128 bytes"
    _still_serving(client)
