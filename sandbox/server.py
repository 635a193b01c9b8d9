"""The sandbox's MTProto server: connections, sessions, and the calls into the world.

Each TCP connection is served by one task (:meth:`_Connection.run`) reading packets, plus
a writer task that batches outgoing messages into containers, plus one task per running
query so a slow query never holds up pings or other queries. Queries reach the world
through :meth:`sandbox.backend.Backend.invoke` with their wrappers removed; whatever
happens there, the client gets an answer (a result or an ``rpc_error``) or, only when the
world raises :class:`~sandbox.backend.DropConnection`, a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

import structlog
from telethon.crypto import AuthKey
from telethon.errors import TypeNotFoundError
from telethon.tl.functions import (
    DestroySessionRequest,
    GetFutureSaltsRequest,
    PingDelayDisconnectRequest,
    PingRequest,
    RpcDropAnswerRequest,
)
from telethon.tl.tlobject import TLObject, TLRequest
from telethon.tl.types import (
    BadMsgNotification,
    BadServerSalt,
    DestroySessionNone,
    DestroySessionOk,
    FutureSalts,
    HttpWait,
    MsgDetailedInfo,
    MsgNewDetailedInfo,
    MsgResendReq,
    MsgsAck,
    MsgsAllInfo,
    MsgsStateInfo,
    MsgsStateReq,
    NewSessionCreated,
    Pong,
    RpcAnswerDroppedRunning,
    RpcAnswerUnknown,
)

from sandbox import mtproto
from sandbox.backend import Backend, DropConnection, RpcError
from sandbox.handshake import (
    Handshake,
    HandshakeError,
    string_session_alias,
    unpadded_forms,
)
from sandbox.keys import SandboxKey
from sandbox.mtproto import Outgoing, ProtocolError
from sandbox.transport import Transport, TransportError, accept

log = structlog.get_logger(__name__)

ACK_DELAY: Final = 0.3  # seconds before a query still running gets an explicit msgs_ack
RECENT_MSG_IDS: Final = 1000  # client msg ids remembered per session (dedup, msgs_state_req)
AUTH_KEY_NOT_FOUND: Final = 404
CLOSE_TIMEOUT: Final = 1.0  # seconds to flush a closing connection before aborting it


class _Session:
    """One MTProto session on one connection; the core's :class:`ClientSession`.

    ``push`` is safe to call from any thread and after the connection closed (a no-op).
    """

    def __init__(self, connection: _Connection, auth_key_id: int, session_id: int) -> None:
        self.auth_key_id = auth_key_id
        self.session_id = session_id
        self.layer: int | None = None
        self.receives_updates = True
        self.started = False
        self.seq = mtproto.SeqNo()
        self.pending_acks: set[int] = set()
        # client msg_id -> whether a content-related answer to it was generated
        self.received: OrderedDict[int, bool] = OrderedDict()
        self.queries: dict[int, asyncio.Task[None]] = {}
        self.outcomes: OrderedDict[int, bool] = OrderedDict()  # finished query -> succeeded
        self._connection = connection
        self._plain_query_seen = False

    def push(self, updates: TLObject) -> None:
        """Queue an unsolicited Updates object; never blocks, never raises."""
        try:
            body = mtproto.maybe_gzip(bytes(updates))
        except Exception:
            log.exception("push_serialisation_failed", update=type(updates).__name__)
            return
        self._connection.enqueue_threadsafe(self, Outgoing(body, response=False))

    def close(self) -> None:
        """Close the connection carrying this session (safe from any thread)."""
        self._connection.close_threadsafe()

    def note_query(self, without_updates: bool) -> None:
        """Record a query's wrapping: a single unwrapped query makes the session updatable."""
        self._plain_query_seen = self._plain_query_seen or not without_updates
        self.receives_updates = self._plain_query_seen

    def remember(self, msg_id: int) -> bool:
        """Record a received client msg_id; False when it was already received."""
        if msg_id in self.received:
            return False
        self.received[msg_id] = False
        if len(self.received) > RECENT_MSG_IDS:
            self.received.popitem(last=False)
        return True

    def answered(self, msg_id: int) -> None:
        """A content-related answer to ``msg_id`` is on its way (it acknowledges it)."""
        self.pending_acks.discard(msg_id)
        if msg_id in self.received:
            self.received[msg_id] = True

    def finished(self, msg_id: int, ok: bool) -> None:
        """A query ended; remember how, for invokeAfterMsg."""
        self.queries.pop(msg_id, None)
        self.outcomes[msg_id] = ok
        if len(self.outcomes) > RECENT_MSG_IDS:
            self.outcomes.popitem(last=False)

    def state_of(self, msg_id: int) -> int:
        """The msgs_state_info byte for one msg_id (service_messages_about_messages)."""
        if msg_id in self.received:
            return (
                4
                | (32 if msg_id in self.queries or msg_id in self.outcomes else 0)
                | (64 if self.received[msg_id] else 0)
            )
        if not self.received or msg_id < next(iter(self.received)):
            return 1
        return 3 if msg_id > next(reversed(self.received)) else 2


class _Connection:
    """One client TCP connection and the sessions it carries."""

    def __init__(
        self,
        server: MTProtoServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._server = server
        self._backend = server.backend
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._transport: Transport | None = None
        self._handshake: Handshake | None = None
        self._auth_key = b""
        self._wire_key_id = 0  # the id the client sends (and we send back)
        self._account_key_ids: dict[int, int] = {}  # wire id -> id sessions are known by
        self._sessions: dict[int, _Session] = {}
        self._outbox: deque[tuple[_Session | None, Outgoing | bytes | None]] = deque()
        self._wake = asyncio.Event()
        self._msg_ids = mtproto.ServerMsgIds()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._disconnect_timer: asyncio.TimerHandle | None = None
        self._closed = False
        peer = writer.get_extra_info("peername")
        self._log = log.bind(peer=f"{peer[0]}:{peer[1]}" if peer else "?")

    # region lifecycle

    async def run(self) -> None:
        """Serve the connection until the client or the server closes it."""
        writer_task: asyncio.Task[None] | None = None
        try:
            self._transport = await accept(self._reader, self._writer)
            self._log = self._log.bind(transport=self._transport.name)
            self._log.debug("connection_opened")
            writer_task = asyncio.create_task(self._write_loop())
            while not self._closed:
                await self._on_packet(await self._transport.read_packet())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except (TransportError, ProtocolError, HandshakeError) as exc:
            self._log.warning("connection_protocol_error", error=str(exc))
        except Exception:
            self._log.exception("connection_failed")
        finally:
            await self._cleanup(writer_task)

    def close(self) -> None:
        """Stop serving: the reader sees EOF, and run() cleans up. Idempotent."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    def close_threadsafe(self) -> None:
        """:meth:`close` from any thread."""
        self._call_in_loop(self.close)

    async def _cleanup(self, writer_task: asyncio.Task[None] | None) -> None:
        self.close()
        for timer in (self._ack_timer, self._disconnect_timer):
            if timer is not None:
                timer.cancel()
        tasks = [t for s in self._sessions.values() for t in s.queries.values()]
        if writer_task is not None:
            tasks.append(writer_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            self._end_session(session)
        try:
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            # A peer that stopped reading would keep our buffered bytes forever.
            self._writer.transport.abort()
        self._log.debug("connection_closed")

    def _end_session(self, session: _Session) -> None:
        self._sessions.pop(session.session_id, None)
        if session.started:
            session.started = False
            self._server.unregister(session)
            for task in session.queries.values():
                task.cancel()
            try:
                self._backend.session_ended(session)
            except Exception:
                self._log.exception("backend_session_ended_failed")

    def destroy_session(self, session: _Session) -> None:
        """Forget ``session`` (destroy_session from another session of the same key)."""
        self._end_session(session)

    def _call_in_loop(self, func: Callable[..., None], *args: object) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            func(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(func, *args)

    # endregion

    # region incoming

    async def _on_packet(self, packet: bytes) -> None:
        if len(packet) < 8:
            raise ProtocolError("packet shorter than an auth_key_id")
        key_id = struct.unpack_from("<Q", packet)[0]
        if key_id == 0:
            self._on_plain(packet)
        elif await self._use_auth_key(key_id):
            self._on_encrypted(mtproto.decrypt(self._auth_key, packet))

    def _on_plain(self, packet: bytes) -> None:
        if len(packet) < 20:
            raise ProtocolError("plaintext message too short")
        length = struct.unpack_from("<i", packet, 16)[0]
        try:
            request = mtproto.read_object(packet[20 : 20 + length])
        except Exception as exc:
            raise HandshakeError("unparsable plaintext message") from exc
        if self._handshake is None:
            self._handshake = Handshake(
                self._server.key, lambda kid: self._backend.auth_key(kid) is not None
            )
        answer, new_key = self._handshake.answer(request)
        if new_key is not None:
            self._backend.add_auth_key(new_key.key_id, new_key.key)
            alias = string_session_alias(new_key.key)
            if alias is not None:
                self._backend.add_auth_key(alias.key_id, alias.key)
            self._log.info("auth_key_created", auth_key_id=new_key.key_id)
        body = bytes(answer)
        reply = struct.pack("<qqi", 0, self._msg_ids.next(response=True), len(body)) + body
        self._enqueue(None, reply)

    async def _use_auth_key(self, key_id: int) -> bool:
        # Asked on every packet, not cached: a key the world forgets (a -404 fault) must
        # stop working at once, even on a connection that is already open.
        key = self._backend.auth_key(key_id)
        if key is None:
            self._log.info("unknown_auth_key", auth_key_id=key_id)
            assert self._transport is not None
            # Written directly: nothing for this connection may follow it.
            self._transport.send_error(AUTH_KEY_NOT_FOUND)
            with contextlib.suppress(ConnectionError):
                await self._transport.drain()
            self.close()
            return False
        self._auth_key, self._wire_key_id = key, key_id
        if key_id not in self._account_key_ids:
            self._account_key_ids[key_id] = self._account_key_id(key_id, key)
        return True

    def _account_key_id(self, key_id: int, key: bytes) -> int:
        # A StringSession alias of a short key (string_session_alias) is the same
        # authorization: sessions on it carry the original key's id.
        for short in unpadded_forms(key):
            short_id = AuthKey(short).key_id
            if self._backend.auth_key(short_id) == short:
                return short_id
        return key_id

    def _on_encrypted(self, message: mtproto.Plaintext) -> None:
        session = self._sessions.get(message.session_id)
        if session is None:
            account_key_id = self._account_key_ids[self._wire_key_id]
            session = _Session(self, account_key_id, message.session_id)
            self._sessions[message.session_id] = session
        bad = mtproto.client_msg_id_error(message.msg_id)
        if bad is not None:
            notice = BadMsgNotification(message.msg_id, message.seq_no, bad)
            self._enqueue(session, Outgoing(bytes(notice), response=True))
            return
        if not mtproto.salt_is_valid(self._auth_key, message.salt):
            notice = BadServerSalt(
                message.msg_id, message.seq_no, mtproto.BAD_SERVER_SALT, self._salt()
            )
            self._enqueue(session, Outgoing(bytes(notice), response=True))
            return
        if not session.started:
            self._start_session(session, message.msg_id)
        inner = mtproto.split_container(message.body)
        for item in inner or [mtproto.Inner(message.msg_id, message.seq_no, message.body)]:
            if session.remember(item.msg_id):
                self._on_message(session, item)

    def _start_session(self, session: _Session, first_msg_id: int) -> None:
        session.started = True
        created = NewSessionCreated(
            first_msg_id=first_msg_id,
            unique_id=struct.unpack("<q", os.urandom(8))[0],
            server_salt=self._salt(),
        )
        self._enqueue(session, Outgoing(bytes(created), response=False))
        self._server.register(self, session)
        try:
            self._backend.session_started(session)
        except Exception:
            self._log.exception("backend_session_started_failed")

    def _on_message(self, session: _Session, item: mtproto.Inner) -> None:
        content_related = bool(item.seq_no & 1)
        if content_related:
            session.pending_acks.add(item.msg_id)
            self._schedule_acks()
        try:
            body = mtproto.gunzip(item.body)
            obj = mtproto.read_object(body)
        except TypeNotFoundError as exc:
            # An unknown method, or a known one with an unknown constructor inside.
            top = mtproto.constructor_of(body)
            message = (
                "INPUT_METHOD_INVALID"
                if exc.invalid_constructor_id == top
                else "INPUT_CONSTRUCTOR_INVALID"
            )
            self._reply_error(session, item.msg_id, 400, message)
            return
        except Exception:
            self._reply_error(session, item.msg_id, 400, "INPUT_FETCH_ERROR")
            return
        self._dispatch(session, item.msg_id, obj, content_related)

    def _dispatch(
        self, session: _Session, msg_id: int, obj: TLObject, content_related: bool
    ) -> None:
        reply: TLObject | None = None
        if isinstance(obj, PingRequest | PingDelayDisconnectRequest):
            if isinstance(obj, PingDelayDisconnectRequest):
                self._arm_disconnect(obj.disconnect_delay)
            reply = Pong(msg_id=msg_id, ping_id=obj.ping_id)
        elif isinstance(obj, MsgsStateReq):
            info = bytes(session.state_of(i) for i in obj.msg_ids)
            reply = MsgsStateInfo(req_msg_id=msg_id, info=info)  # bytes: values >127 stay one byte
        elif isinstance(obj, GetFutureSaltsRequest):
            salts = mtproto.future_salts(self._auth_key, obj.num)
            reply = FutureSalts(req_msg_id=msg_id, now=int(time.time()), salts=salts)
        elif isinstance(obj, DestroySessionRequest):
            found = self._server.destroy_session(session, obj.session_id)
            reply = (DestroySessionOk if found else DestroySessionNone)(obj.session_id)
        elif isinstance(obj, RpcDropAnswerRequest):
            task = session.queries.get(obj.req_msg_id)
            if task is not None:
                task.cancel()
            dropped = RpcAnswerDroppedRunning() if task is not None else RpcAnswerUnknown()
            self._reply(session, msg_id, mtproto.rpc_result(msg_id, bytes(dropped)))
        elif isinstance(obj, TLRequest):
            self._start_query(session, msg_id, obj)
        elif content_related and not isinstance(obj, _SERVICE_NOTICES):
            # A type where a method was expected: nothing we could execute.
            self._reply_error(session, msg_id, 400, "INPUT_METHOD_INVALID")
        if reply is not None:
            self._reply(session, msg_id, bytes(reply))

    def _arm_disconnect(self, delay: int) -> None:
        if self._disconnect_timer is not None:
            self._disconnect_timer.cancel()
        self._disconnect_timer = self._loop.call_later(max(delay, 1), self.close)

    # endregion

    # region queries

    def _start_query(self, session: _Session, msg_id: int, request: TLRequest) -> None:
        try:
            unwrapped = mtproto.unwrap(request)
        except Exception:
            self._reply_error(session, msg_id, 400, "INPUT_FETCH_ERROR")
            return
        if unwrapped.layer is not None:
            session.layer = unwrapped.layer
        session.note_query(unwrapped.without_updates)
        task = asyncio.create_task(self._run_query(session, msg_id, unwrapped))
        session.queries[msg_id] = task

    async def _run_query(
        self, session: _Session, msg_id: int, unwrapped: mtproto.Unwrapped
    ) -> None:
        ok = False
        try:
            for after in unwrapped.after_msg_ids:
                earlier = session.queries.get(after)
                if earlier is not None:
                    await asyncio.wait([earlier])
                if session.outcomes.get(after, True) is False:
                    self._reply_error(session, msg_id, 400, "MSG_WAIT_FAILED")
                    return
            query = unwrapped.query
            try:
                result = await self._backend.invoke(session, query)
                body = mtproto.rpc_result(msg_id, mtproto.serialize_result(query, result))
            except RpcError as exc:
                self._reply_error(session, msg_id, exc.code, exc.message)
                return
            except DropConnection:
                self._log.info("connection_dropped_by_world", method=type(query).__name__)
                self.close()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("query_failed", method=type(query).__name__)
                self._reply_error(session, msg_id, 500, "INTERNAL")
                return
            ok = True
            self._reply(session, msg_id, body)
        finally:
            session.finished(msg_id, ok)

    # endregion

    # region outgoing

    def _salt(self) -> int:
        return mtproto.salt_for(self._auth_key, mtproto.current_period())

    def _reply(self, session: _Session, msg_id: int, body: bytes) -> None:
        session.answered(msg_id)
        self._enqueue(session, Outgoing(body, response=True))

    def _reply_error(self, session: _Session, msg_id: int, code: int, message: str) -> None:
        self._reply(session, msg_id, mtproto.rpc_error(msg_id, code, message))

    def _enqueue(self, session: _Session | None, item: Outgoing | bytes | None) -> None:
        if self._closed:
            return
        self._outbox.append((session, item))
        self._wake.set()

    def enqueue_threadsafe(self, session: _Session, item: Outgoing) -> None:
        """Queue an outgoing message from any thread; dropped once the connection closed."""
        self._call_in_loop(self._enqueue, session, item)

    def _schedule_acks(self) -> None:
        if self._ack_timer is None:
            self._ack_timer = self._loop.call_later(ACK_DELAY, self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_timer = None
        for session in self._sessions.values():
            if session.pending_acks:
                self._enqueue(session, None)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_now()

    async def _flush_now(self) -> None:
        assert self._transport is not None
        while self._outbox:
            session, item = self._outbox.popleft()
            if session is None:
                assert isinstance(item, bytes)
                self._transport.send(item)
                continue
            batch = [item] if isinstance(item, Outgoing) else []
            while self._outbox and self._outbox[0][0] is session:
                extra = self._outbox.popleft()[1]
                if isinstance(extra, Outgoing):
                    batch.append(extra)
            self._send_batch(session, batch)
        try:
            await self._transport.drain()
        except ConnectionError:
            self.close()

    def _send_batch(self, session: _Session, batch: list[Outgoing]) -> None:
        assert self._transport is not None
        if session.pending_acks and session.started:
            ack = MsgsAck(msg_ids=sorted(session.pending_acks))
            session.pending_acks.clear()
            batch.insert(0, Outgoing(bytes(ack), response=False, content_related=False))
        salt = self._salt()
        for chunk in _chunks(batch):
            triples = [
                (self._msg_ids.next(o.response), session.seq.next(o.content_related), o.body)
                for o in chunk
            ]
            if len(triples) == 1:
                msg_id, seq_no, body = triples[0]
            else:
                body = mtproto.container(triples)
                msg_id = self._msg_ids.next(any(o.response for o in chunk))
                seq_no = session.seq.next(False)
            self._transport.send(
                mtproto.encrypt(
                    self._auth_key,
                    self._wire_key_id,
                    salt,
                    session.session_id,
                    msg_id,
                    seq_no,
                    body,
                )
            )

    # endregion


# Client->server service messages that need no answer (and no error) from the server.
_SERVICE_NOTICES: Final = (
    MsgsAck,
    MsgResendReq,
    MsgsAllInfo,
    MsgsStateInfo,
    MsgDetailedInfo,
    MsgNewDetailedInfo,
    HttpWait,
)


def _chunks(batch: list[Outgoing]) -> list[list[Outgoing]]:
    # Containers are bounded in count and size; an oversized message travels alone.
    chunks: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    size = 0
    for item in batch:
        if current and (
            len(current) >= mtproto.MAX_CONTAINER_MESSAGES
            or size + len(item.body) + 16 > mtproto.MAX_CONTAINER_BYTES
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.body) + 16
    if current:
        chunks.append(current)
    return chunks


class MTProtoServer:
    """A TCP server speaking MTProto 2.0 to Telethon clients on behalf of ``backend``.

    ``start`` binds (``port=0`` picks a free port, see :attr:`port`); ``stop`` closes the
    listening socket and every connection and returns once their tasks are done.
    """

    def __init__(
        self, backend: Backend, key: SandboxKey, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.backend = backend
        self.key = key
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self._sessions: dict[tuple[int, int], tuple[_Connection, _Session]] = {}

    @property
    def port(self) -> int:
        """The bound port; raises RuntimeError before :meth:`start`."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MTProtoServer is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting connections (raises OSError if the port is taken)."""
        self._server = await asyncio.start_server(self._accept, self.host, self._requested_port)
        log.info("mtproto_server_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop accepting, close every connection, wait for them. Idempotent."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections.values())
        for connection in list(self._connections):
            connection.close()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[connection] = task
        try:
            await connection.run()
        finally:
            self._connections.pop(connection, None)

    def register(self, connection: _Connection, session: _Session) -> None:
        """Note a started session, so destroy_session from a sibling can find it."""
        self._sessions[(session.auth_key_id, session.session_id)] = (connection, session)

    def unregister(self, session: _Session) -> None:
        """Forget an ended session."""
        entry = self._sessions.get((session.auth_key_id, session.session_id))
        if entry is not None and entry[1] is session:
            del self._sessions[(session.auth_key_id, session.session_id)]

    def destroy_session(self, requester: _Session, session_id: int) -> bool:
        """End another session of the requester's auth key; False if there is none."""
        entry = self._sessions.get((requester.auth_key_id, session_id))
        if entry is None or entry[1] is requester:
            return False
        connection, session = entry
        connection.destroy_session(session)
        return True
