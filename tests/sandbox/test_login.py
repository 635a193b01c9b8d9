"""Logging in with unmodified Telethon: bot token, phone code, sign-up, QR, log out."""

from __future__ import annotations

import pytest
from telethon import errors
from telethon.tl import functions, types

from sandbox import Sandbox
from tests.sandbox.conftest import Clients, next_phone


async def test_bot_login_with_token(clients: Clients) -> None:
    client, account = await clients.bot("login_bot")
    me = await client.get_me()
    assert me.id == account.id
    assert me.bot and me.username == "login_bot"
    assert await client.is_bot()


async def test_bot_login_with_a_wrong_secret_is_refused(clients: Clients, sandbox: Sandbox) -> None:
    account = sandbox.control.create_bot("wrong_bot")
    client = clients.raw()
    with pytest.raises(errors.AccessTokenInvalidError):
        await client.start(bot_token=f"{account.id}:not-the-secret")


async def test_user_login_by_code(clients: Clients, sandbox: Sandbox) -> None:
    phone = next_phone()
    account = sandbox.control.create_user(phone, "Alice", username="alice")
    client = clients.raw()
    await client.connect()
    assert not await client.is_user_authorized()
    sent = await client.send_code_request(phone)
    code = sandbox.control.last_login_code(phone)
    assert code is not None
    with pytest.raises(errors.PhoneCodeInvalidError):
        await client.sign_in(phone, "00000" if code != "00000" else "11111")
    me = await client.sign_in(phone, code, phone_code_hash=sent.phone_code_hash)
    assert me.id == account.id
    assert (await client.get_me()).phone == phone.lstrip("+")
    assert await client.is_user_authorized()


async def test_unregistered_phone_signs_up(clients: Clients) -> None:
    phone = next_phone()
    client = clients.raw()
    await client.connect()
    sent = await client.send_code_request(phone)
    code = clients.sandbox.control.last_login_code(phone)
    with pytest.raises(errors.PhoneNumberUnoccupiedError):
        await client.sign_in(phone, code)
    # Telethon's sign_up helper refuses third-party sign-ups; the raw request still works.
    result = await client(
        functions.auth.SignUpRequest(phone, sent.phone_code_hash, "New", "Person")
    )
    assert result.user.first_name == "New"
    assert clients.sandbox.control.account(result.user.id).phone == phone.lstrip("+")


async def test_qr_login_accepted_by_another_session(clients: Clients) -> None:
    owner, account = await clients.user("Owner")
    newcomer = clients.raw()
    await newcomer.connect()
    qr = await newcomer.qr_login()
    assert qr.url.startswith("tg://login?token=")
    await owner(functions.auth.AcceptLoginTokenRequest(qr.token))
    user = await qr.wait(timeout=10)
    assert user.id == account.id
    assert (await newcomer.get_me()).id == account.id


async def test_unauthorized_calls_answer_401(clients: Clients) -> None:
    client = clients.raw()
    await client.connect()
    with pytest.raises(errors.AuthKeyUnregisteredError):
        await client(functions.updates.GetStateRequest())


async def test_log_out_detaches_the_key(clients: Clients) -> None:
    client, account = await clients.user()
    assert await client.log_out()
    assert clients.sandbox.control.online(account.id) is False


async def test_unimplemented_method_answers_an_rpc_error(clients: Clients) -> None:
    client, _ = await clients.user()
    with pytest.raises(errors.RPCError, match="METHOD_NOT_IMPLEMENTED"):
        await client(functions.messages.GetAllStickersRequest(hash=0))
    # The connection survived: the next call works.
    assert (await client.get_me()) is not None


async def test_config_points_at_the_sandbox(clients: Clients, sandbox: Sandbox) -> None:
    client, _ = await clients.user()
    config = await client(functions.help.GetConfigRequest())
    assert config.this_dc == 2
    assert {(o.ip_address, o.port) for o in config.dc_options} == {(sandbox.host, sandbox.port)}
    nearest = await client(functions.help.GetNearestDcRequest())
    assert nearest.this_dc == nearest.nearest_dc == 2


async def test_user_lookups(clients: Clients) -> None:
    client, account = await clients.user("Looker", username="looker")
    bot = clients.sandbox.control.create_bot("lookup_bot")
    entity = await client.get_entity("lookup_bot")
    assert entity.bot and entity.id == bot.id and entity.access_hash == bot.access_hash
    full = await client(functions.users.GetFullUserRequest(entity))
    assert full.full_user.id == bot.id and full.full_user.bot_info is not None
    wrong = types.InputUser(bot.id, access_hash=bot.access_hash + 1)
    # A wrong access hash is left out of the answer, as Telegram does.
    assert await client(functions.users.GetUsersRequest([wrong])) == []
    [me] = await client(functions.users.GetUsersRequest([types.InputUserSelf()]))
    assert me.is_self and me.username == "looker" and me.id == account.id
