"""The MTProto core against an unmodified Telethon client, over real loopback TCP.

Covers what the core promises: every transport, key exchanges that never fail client
side (including keys with a leading zero byte), salts, containers, pings, acks, clock
skew, unknown queries and failing handlers answered as RPC errors on a live connection,
dropped connections, unknown auth keys, and a client in another process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import telethon.network.authenticator as authenticator
from telethon import TelegramClient, connection, errors, functions, types
from telethon.crypto import AuthKey
from telethon.network.connection import Connection
from telethon.sessions import MemorySession, StringSession
from telethon.tl.alltlobjects import LAYER
from telethon.tl.tlobject import TLRequest

import sandbox.handshake as handshake
from sandbox import Sandbox
from sandbox.backend import DropConnection
from sandbox.client import new_client
from tests.sandbox.conftest import Clients, wait_for

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = [
    connection.ConnectionTcpFull,
    connection.ConnectionTcpIntermediate,
    connection.ConnectionTcpAbridged,
    connection.ConnectionTcpObfuscated,
]


async def _connected(clients: Clients, **kwargs: Any) -> TelegramClient:
    client = clients.raw(**kwargs)
    await client.connect()
    return client


def _auth_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    # Telethon logs this (and retries after a second) when a key exchange fails.
    return [r.getMessage() for r in caplog.records if "at new auth_key failed" in r.getMessage()]


class _UnknownRequest(TLRequest):
    """A method the server cannot know: a constructor id from no TL schema."""

    CONSTRUCTOR_ID = 0x0BADC0DE
    SUBCLASS_OF_ID = 0x0BADC0DE

    def __init__(self, payload: bytes = b"") -> None:
        self.payload = payload

    def _bytes(self) -> bytes:
        return self.CONSTRUCTOR_ID.to_bytes(4, "little") + self.serialize_bytes(self.payload)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.__name__)
async def test_connect_over_each_transport(clients: Clients, transport: type[Connection]) -> None:
    client = await _connected(clients, connection=transport)
    config = await client(functions.help.GetConfigRequest())
    assert isinstance(config, types.Config)
    # Several round trips, some large enough for abridged's long length form.
    for _ in range(3):
        assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)
    assert client.is_connected()


async def test_fifty_key_exchanges_without_a_failure(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telethon")
    key_ids = set()
    for _ in range(50):
        client = new_client(sandbox)
        await client.connect()
        try:
            key_ids.add(client.session.auth_key.key_id)
            assert (
                sandbox.world.auth_key(client.session.auth_key.key_id)
                == client.session.auth_key.key
            )
        finally:
            await client.disconnect()
    assert len(key_ids) == 50
    assert _auth_failures(caplog) == []


async def test_trivial_factorisation_from_telethon_is_accepted(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Telethon's randomised Pollard-Brent returns (1, pq) about once in 1,500 exchanges;
    # force it, and the exchange must still succeed at the first attempt.
    caplog.set_level(logging.WARNING, logger="telethon")
    monkeypatch.setattr(authenticator.Factorization, "factorize", lambda pq: (1, pq))
    client = new_client(sandbox)
    await client.connect()
    try:
        assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)
    finally:
        await client.disconnect()
    assert _auth_failures(caplog) == []


def _leading_zero_exponents() -> tuple[int, int]:
    """A server exponent a and client exponent b whose g^ab mod p has a leading zero byte.

    Both public values stay within the safe range the client and the server check. Small
    b values make the search a few thousand modular multiplications.
    """
    p, g = handshake.DH_PRIME, handshake.DH_G
    safe = 2 ** (2048 - 64)
    a = int.from_bytes(b"\x5a" * 256, "big")
    g_a = pow(g, a, p)
    assert safe <= g_a <= p - safe
    b = 1400  # 3^b exceeds p from b = 1292 on, so g_b is no longer a plain power
    g_b, gab = pow(g, b, p), pow(g_a, b, p)
    while not (gab.bit_length() <= 2040 and safe <= g_b <= p - safe):
        b, g_b, gab = b + 1, g_b * g % p, gab * g_a % p
    return a, b


@pytest.fixture
def leading_zero_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next key exchanges produce a key whose first byte is zero."""
    a, b = _leading_zero_exponents()
    monkeypatch.setattr(handshake, "_random_exponent", lambda: a)

    def urandom(n: int) -> bytes:
        return b.to_bytes(256, "big") if n == 256 else os.urandom(n)

    # Only the client's choice of b is steered; Telethon's code runs unchanged.
    monkeypatch.setattr(authenticator, "os", SimpleNamespace(urandom=urandom))


@pytest.mark.usefixtures("leading_zero_key")
async def test_auth_key_with_leading_zero_byte_works(
    sandbox: Sandbox, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telethon")
    client = await _connected(clients)
    key = client.session.auth_key
    assert len(key.key) == 255  # Telethon strips the zero byte
    assert sandbox.world.auth_key(key.key_id) == key.key
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)
    assert _auth_failures(caplog) == []


@pytest.mark.usefixtures("leading_zero_key")
async def test_short_key_survives_a_string_session(clients: Clients) -> None:
    bot, account = await clients.bot()
    assert len(bot.session.auth_key.key) == 255
    # StringSession pads the key to 256 bytes at the end: another key, same login.
    exported = StringSession.save(bot.session)
    again = clients.raw(session=StringSession(exported))
    await again.connect()
    assert len(again.session.auth_key.key) == 256
    me = await again.get_me()
    assert me is not None and me.id == account.id


async def test_containers_pings_and_acks(clients: Clients) -> None:
    client = await _connected(clients)
    # A list is sent as one msg_container; every answer must come back.
    results = await client([functions.help.GetConfigRequest() for _ in range(5)])
    assert all(isinstance(r, types.Config) for r in results)
    # Ordered requests travel wrapped in invokeAfterMsg.
    ordered = await client([functions.help.GetConfigRequest() for _ in range(3)], ordered=True)
    assert len(ordered) == 3
    pong = await client(functions.PingRequest(ping_id=1234))
    assert isinstance(pong, types.Pong) and pong.ping_id == 1234
    pong = await client(functions.PingDelayDisconnectRequest(ping_id=99, disconnect_delay=75))
    assert pong.ping_id == 99
    # Telethon has acknowledged our messages all along; the session is still fine.
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


async def test_slow_query_is_acked_and_does_not_block_pings(
    sandbox: Sandbox, clients: Clients
) -> None:
    client = await _connected(clients)
    sandbox.control.delay("help.getConfig", seconds=1.0, count=1)
    slow = asyncio.ensure_future(client(functions.help.GetConfigRequest()))
    pong = await client(functions.PingRequest(ping_id=7))
    assert pong.ping_id == 7 and not slow.done()
    assert isinstance(await slow, types.Config)


async def test_future_salts(clients: Clients) -> None:
    client = await _connected(clients)
    salts = await client(functions.GetFutureSaltsRequest(num=3))
    assert isinstance(salts, types.FutureSalts) and len(salts.salts) == 3
    # The salt the client was told to use is the current one.
    assert salts.salts[0].salt == client._sender._state.salt  # noqa: SLF001


async def test_unknown_query_is_an_rpc_error_not_a_disconnect(
    clients: Clients,
) -> None:
    client = await _connected(clients)
    with pytest.raises(errors.InputMethodInvalidError):
        await client(_UnknownRequest())
    # Big enough to travel gzip_packed: the server unpacks it before failing the same way.
    with pytest.raises(errors.InputMethodInvalidError):
        await client(_UnknownRequest(b"z" * 4000))
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


async def test_unimplemented_method_is_an_rpc_error(clients: Clients) -> None:
    client = await _connected(clients)
    with pytest.raises(errors.RPCError):
        await client(functions.account.GetAuthorizationsRequest())
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


def _patch_invoke(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, method: type[TLRequest], answer: Any
) -> None:
    """Make the world answer ``method`` with ``answer()`` (which may raise)."""
    real = sandbox.world.invoke

    async def invoke(session: Any, query: TLRequest) -> Any:
        if isinstance(query, method):
            return answer()
        return await real(session, query)

    monkeypatch.setattr(sandbox.world, "invoke", invoke)


async def _send_raw(client: TelegramClient, request: TLRequest) -> Any:
    # The sender directly: the client's own call would retry a 500 for seconds.
    return await client._sender.send(request)  # noqa: SLF001


async def test_unserialisable_result_is_internal_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, clients: Clients
) -> None:
    # Telethon refuses to serialise a Message with views but without forwards.
    broken = types.Message(id=1, peer_id=types.PeerUser(1), date=None, message="x", views=5)
    _patch_invoke(sandbox, monkeypatch, functions.help.GetNearestDcRequest, lambda: broken)
    client = await _connected(clients)
    with pytest.raises(errors.ServerError) as caught:
        await _send_raw(client, functions.help.GetNearestDcRequest())
    assert caught.value.code == 500 and caught.value.message == "INTERNAL"
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


async def test_failing_handler_is_internal_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, clients: Clients
) -> None:
    def fail() -> Any:
        raise KeyError("bug in a handler")

    _patch_invoke(sandbox, monkeypatch, functions.help.GetNearestDcRequest, fail)
    client = await _connected(clients)
    with pytest.raises(errors.ServerError):
        await _send_raw(client, functions.help.GetNearestDcRequest())
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


async def test_drop_connection_then_client_reconnects(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, clients: Clients
) -> None:
    drops = [1]

    def answer() -> Any:
        if drops:
            drops.pop()
            raise DropConnection
        return types.NearestDc(country="XX", this_dc=2, nearest_dc=2)

    _patch_invoke(sandbox, monkeypatch, functions.help.GetNearestDcRequest, answer)
    client = await _connected(clients)
    first_session = client._sender._state.id  # noqa: SLF001
    # The request is re-sent on the new connection (new session id) and answered there.
    nearest = await client(functions.help.GetNearestDcRequest())
    assert nearest.country == "XX"
    assert client._sender._state.id != first_session  # noqa: SLF001


def _session_with_key(key: AuthKey) -> MemorySession:
    # The key must be in the session before the client is built: its sender copies it.
    session = MemorySession()
    session.auth_key = key
    return session


async def test_unknown_auth_key_is_404(sandbox: Sandbox) -> None:
    client = new_client(sandbox, session=_session_with_key(AuthKey(os.urandom(256))))
    with pytest.raises(errors.AuthKeyNotFound):
        await client.connect()
    await client.disconnect()


async def test_client_clock_skew_is_corrected(clients: Clients) -> None:
    client = await _connected(clients)
    # Pretend the client's clock runs 20 minutes ahead: its msg ids are "too high" (17);
    # Telethon re-syncs from our bad_msg_notification and re-sends.
    client._sender._state.time_offset += 1200  # noqa: SLF001
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)
    assert abs(client._sender._state.time_offset) < 5  # noqa: SLF001


async def test_destroy_session_from_a_sibling(sandbox: Sandbox, clients: Clients) -> None:
    first = await _connected(clients)
    second = new_client(sandbox, session=_session_with_key(first.session.auth_key))
    await second.connect()
    try:
        target = first._sender._state.id  # noqa: SLF001
        done = await second(functions.DestroySessionRequest(session_id=target))
        assert isinstance(done, types.DestroySessionOk)
        gone = await second(functions.DestroySessionRequest(session_id=target))
        assert isinstance(gone, types.DestroySessionNone)
    finally:
        await second.disconnect()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import telethon.crypto.rsa
    from telethon import TelegramClient, connection, functions, types
    from telethon.sessions import MemorySession, StringSession

    async def main(port, pem):
        telethon.crypto.rsa.add_key(pem, old=False)
        client = TelegramClient(MemorySession(), 1, "x",
                                connection=connection.ConnectionTcpIntermediate)
        client.session.set_dc(2, "127.0.0.1", port)
        await client.connect()
        config = await client(functions.help.GetConfigRequest())
        assert isinstance(config, types.Config)
        pong = await client(functions.PingRequest(ping_id=5))
        await client.disconnect()
        print("ok", pong.ping_id)

    asyncio.run(main(int(sys.argv[1]), sys.stdin.read()))
    """
)


async def test_client_in_another_process(sandbox: Sandbox) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(sandbox.port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(sandbox.public_key_pem.encode()), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["ok", "5"]


async def test_stop_closes_live_connections() -> None:
    running = await Sandbox.start()
    client = new_client(running, auto_reconnect=False)
    await client.connect()
    try:
        await running.stop()  # must not wait for the client to leave
        # The client notices (with or without a connection error, either is fine).
        done, _ = await asyncio.wait([client.disconnected], timeout=10)
        assert done
    finally:
        await client.disconnect()


async def test_ping_delay_disconnect_closes_a_silent_connection(clients: Clients) -> None:
    client = await _connected(clients)
    first_session = client._sender._state.id  # noqa: SLF001
    await client(functions.PingDelayDisconnectRequest(ping_id=1, disconnect_delay=1))
    # No further ping arrives, so the server hangs up; Telethon reconnects (new session).
    await wait_for(lambda: client._sender._state.id != first_session, "a reconnect")  # noqa: SLF001
    assert isinstance(await client(functions.help.GetConfigRequest()), types.Config)


async def test_sessions_report_layer_and_update_wish(sandbox: Sandbox, clients: Clients) -> None:
    quiet = await _connected(clients, receive_updates=False)
    loud = await _connected(clients)
    for client, wants in ((quiet, False), (loud, True)):
        [session] = sandbox.world.sessions[client.session.auth_key.key_id]
        assert session.receives_updates is wants
        assert session.layer == LAYER
