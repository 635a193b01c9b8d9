"""The client library for programs outside the runtime (and for the command line).

``Client`` is synchronous and for one thread; ``AsyncClient`` is for asyncio and allows
many requests in flight. Both guarantee that :meth:`request` returns exactly once: the
reply body, or :class:`~runtime.errors.RequestError` carrying the typed error
(``Timeout`` included, raised locally if no answer arrives shortly after the deadline).
Neither ever re-sends a request. A request declared as ``Request[Reply]`` returns its
reply typed and checked (:class:`~runtime.errors.UnexpectedReply` for anything else), so
``client.request("session:alice", GetMe()).user`` needs no ``isinstance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from typing import Any, TypeVar, overload

import zmq
import zmq.asyncio

from protocols import errors
from protocols.base import Message, Request
from protocols.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameError,
    decode_event,
    decode_packet,
    encode_packet,
    open_body,
    pack_body,
)
from protocols.envelope import Envelope, new_id
from runtime import curve
from runtime.errors import RequestError, check_reply
from runtime.router import SUBSOCKET_SEPARATOR

R = TypeVar("R", bound=Message)

# How long past a deadline to wait for the node's own Timeout before declaring one here.
_GRACE_S = 0.25


def _client_identity(identity: str | None) -> str:
    """The given identity (checked) or a fresh ``client:<random>`` one.

    Raises ValueError for an identity the broker would read as a node's socket.
    """
    if identity is None:
        return f"client:{uuid.uuid4().hex[:16]}"
    if SUBSOCKET_SEPARATOR.decode() in identity:
        raise ValueError(f"a client identity may not contain {SUBSOCKET_SEPARATOR.decode()!r}")
    return identity


def _dealer(
    context: zmq.Context[Any],
    identity: str,
    endpoint: str,
    curve_server_key: str | None,
    key_pair: curve.KeyPair | None = None,
) -> Any:
    """A DEALER named ``identity``, connected to the broker (encrypted if a key is given)."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity.encode())
    sock.setsockopt(zmq.LINGER, 0)
    curve.dial(sock, curve_server_key, key_pair)
    sock.connect(endpoint)
    return sock


def _envelope(
    sender: str, target: str, body: Message, timeout: float, idempotency_key: str, trace_id: str
) -> Envelope:
    return Envelope(
        id=new_id(),
        sender=sender,
        target=target,
        body=pack_body(body),
        deadline=time.time() + timeout,
        idempotency_key=idempotency_key,
        trace_id=trace_id,
    )


def _read(frame: bytes, max_bytes: int) -> tuple[str, Message] | None:
    """(reply_to, body) of a reply frame; None for anything that is not a reply."""
    try:
        packet = decode_packet(frame, max_bytes)
    except FrameError as exc:
        return exc.request_id, errors.BadRequest(message=exc.reason)
    if not isinstance(packet, Envelope) or not packet.reply_to:
        return None
    try:
        return packet.reply_to, open_body(packet.body)
    except FrameError as exc:
        return packet.reply_to, errors.BadRequest(message=f"unreadable reply: {exc.reason}")


def _frame(envelope: Envelope, max_bytes: int) -> bytes:
    """The request as one frame; RequestError(BadRequest) if over ``max_bytes`` (not sent).

    The broker would answer a frame over the limit ``BadRequest`` too, and drops the
    connection of a peer that sends one over 4x the limit: refusing here is faster and
    never leaves the caller waiting.
    """
    frame = encode_packet(envelope)
    if len(frame) > max_bytes:
        message = (
            f"request of {len(frame)} bytes exceeds max_frame_bytes ({max_bytes}): send "
            "less per request, or raise runtime.max_frame_bytes on every process"
        )
        raise RequestError(errors.BadRequest(message=message))
    return frame


def _cannot_send() -> RequestError:
    """A request that cannot even be queued (1000 are waiting for the broker)."""
    return RequestError(errors.Busy(message="too many requests queued for the broker"))


def _local_timeout(target: str, timeout: float) -> RequestError:
    return RequestError(errors.Timeout(message=f"no answer from {target} within {timeout:g}s"))


class Client:
    """A synchronous client: request/reply through the broker, for one thread."""

    def __init__(
        self,
        endpoint: str,
        *,
        identity: str | None = None,
        context: zmq.Context | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        curve_server_key: str | None = None,
        curve_key_pair: curve.KeyPair | None = None,
    ) -> None:
        self.address = _client_identity(identity)
        self.max_frame_bytes = max_frame_bytes
        context = context or zmq.Context.instance()
        self._socket = _dealer(context, self.address, endpoint, curve_server_key, curve_key_pair)

    @overload
    def request(
        self,
        target: str,
        body: Request[R],
        timeout: float = ...,
        idempotency_key: str = ...,
        trace_id: str = ...,
    ) -> R: ...
    @overload
    def request(
        self,
        target: str,
        body: Message,
        timeout: float = ...,
        idempotency_key: str = ...,
        trace_id: str = ...,
    ) -> Message: ...
    def request(
        self,
        target: str,
        body: Message,
        timeout: float = 10.0,
        idempotency_key: str = "",
        trace_id: str = "",
    ) -> Message:
        """Send ``body`` to ``target`` and return the reply body (of the declared type).

        Raises :class:`RequestError` with the typed error the request was answered with,
        or with ``Timeout`` if nothing came back by the deadline; :class:`UnexpectedReply`
        for a reply the request does not declare.
        """
        request_id = self.send(target, body, timeout, idempotency_key, trace_id)
        give_up = time.monotonic() + timeout + _GRACE_S
        while (left := give_up - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is not None and reply[0] == request_id:
                return check_reply(target, body, reply[1])
        raise _local_timeout(target, timeout)

    def send(
        self,
        target: str,
        body: Message,
        timeout: float = 10.0,
        idempotency_key: str = "",
        trace_id: str = "",
    ) -> str:
        """Send a request without waiting (for pipelining); returns its id."""
        envelope = _envelope(self.address, target, body, timeout, idempotency_key, trace_id)
        try:
            self._socket.send(_frame(envelope, self.max_frame_bytes), zmq.NOBLOCK)
        except zmq.Again:
            raise _cannot_send() from None
        return envelope.id

    def receive(self, timeout: float) -> tuple[str, Message] | None:
        """The next reply as (id of the request it answers, body), or None on timeout."""
        if not self._socket.poll(timeout * 1000):
            return None
        return _read(self._socket.recv(), self.max_frame_bytes)

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """An asyncio client: any number of requests in flight, replies matched by id."""

    def __init__(
        self,
        endpoint: str,
        *,
        identity: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        curve_server_key: str | None = None,
        curve_key_pair: curve.KeyPair | None = None,
    ) -> None:
        self.address = _client_identity(identity)
        self.max_frame_bytes = max_frame_bytes
        context = zmq.asyncio.Context.shadow(zmq.Context.instance())
        self._socket = _dealer(context, self.address, endpoint, curve_server_key, curve_key_pair)
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._reader: asyncio.Task[None] | None = None

    @overload
    async def request(
        self,
        target: str,
        body: Request[R],
        timeout: float = ...,
        idempotency_key: str = ...,
        trace_id: str = ...,
    ) -> R: ...
    @overload
    async def request(
        self,
        target: str,
        body: Message,
        timeout: float = ...,
        idempotency_key: str = ...,
        trace_id: str = ...,
    ) -> Message: ...
    async def request(
        self,
        target: str,
        body: Message,
        timeout: float = 10.0,
        idempotency_key: str = "",
        trace_id: str = "",
    ) -> Message:
        """As :meth:`Client.request`, without blocking the event loop."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())
        envelope = _envelope(self.address, target, body, timeout, idempotency_key, trace_id)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[envelope.id] = future
        try:
            await self._socket.send(_frame(envelope, self.max_frame_bytes), zmq.NOBLOCK)
            reply = await asyncio.wait_for(future, timeout + _GRACE_S)
            return check_reply(target, body, reply)
        except zmq.Again:
            raise _cannot_send() from None
        except TimeoutError:
            raise _local_timeout(target, timeout) from None
        finally:
            self._waiting.pop(envelope.id, None)

    async def _read_replies(self) -> None:
        while True:
            reply = _read(await self._socket.recv(), self.max_frame_bytes)
            if reply is None:
                continue
            future = self._waiting.get(reply[0])
            if future is not None and not future.done():
                future.set_result(reply[1])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._socket.close(linger=0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _sub(
    context: zmq.Context[Any],
    endpoint: str,
    topics: Iterable[str],
    curve_server_key: str | None,
    key_pair: curve.KeyPair | None = None,
) -> Any:
    """A SUB socket on the bus, subscribed to every topic prefix in ``topics``."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    curve.dial(sock, curve_server_key, key_pair)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(endpoint)
    return sock


def _event(topic: bytes, frame: bytes, max_bytes: int) -> tuple[str, Message] | None:
    """(topic, event) of a bus message; None for one that cannot be read."""
    try:
        return topic.decode(), decode_event(frame, max_bytes)
    except (FrameError, UnicodeDecodeError):
        return None


class Subscriber:
    """Receives events from the bus whose topics start with the given prefixes."""

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = ("",),
        *,
        context: zmq.Context | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        curve_server_key: str | None = None,
        curve_key_pair: curve.KeyPair | None = None,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        context = context or zmq.Context.instance()
        self._socket = _sub(context, endpoint, topics, curve_server_key, curve_key_pair)

    def receive(self, timeout: float) -> tuple[str, Message] | None:
        """The next (topic, event), or None on timeout; unreadable events are skipped."""
        give_up = time.monotonic() + timeout
        while (left := give_up - time.monotonic()) > 0:
            if not self._socket.poll(left * 1000):
                return None
            topic = self._socket.recv()
            frame = self._socket.recv() if self._socket.getsockopt(zmq.RCVMORE) else b""
            event = _event(topic, frame, self.max_frame_bytes)
            if event is not None:
                return event
        return None

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscriber:
    """Events from the bus for asyncio: ``async for topic, event in subscriber``."""

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = ("",),
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        curve_server_key: str | None = None,
        curve_key_pair: curve.KeyPair | None = None,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        context = zmq.asyncio.Context.shadow(zmq.Context.instance())
        self._socket = _sub(context, endpoint, topics, curve_server_key, curve_key_pair)

    async def receive(self) -> tuple[str, Message]:
        """The next (topic, event); unreadable events are skipped."""
        while True:
            topic = await self._socket.recv()
            frame = await self._socket.recv() if self._socket.getsockopt(zmq.RCVMORE) else b""
            event = _event(topic, frame, self.max_frame_bytes)
            if event is not None:
                return event

    def __aiter__(self) -> AsyncSubscriber:
        return self

    async def __anext__(self) -> tuple[str, Message]:
        return await self.receive()

    def close(self) -> None:
        self._socket.close(linger=0)

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
