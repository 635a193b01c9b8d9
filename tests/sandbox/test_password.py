"""Two-step verification with unmodified Telethon: code, then the password over SRP."""

from __future__ import annotations

from pathlib import Path

import pytest
from telethon import errors
from telethon.password import compute_check
from telethon.tl import functions

from sandbox import WORLD_FILE, Sandbox, ephemeral_key
from sandbox.client import new_client
from tests.sandbox.conftest import Clients, next_phone


async def test_code_then_password(clients: Clients, sandbox: Sandbox) -> None:
    phone = next_phone()
    account = sandbox.control.create_user(phone, "Guarded")
    sandbox.control.set_password(account.id, "correct horse", hint="a horse")
    client = clients.raw()
    await client.connect()
    with pytest.raises(errors.AuthKeyUnregisteredError):  # no login waits for a password
        await client(functions.account.GetPasswordRequest())
    await client.send_code_request(phone)
    with pytest.raises(errors.SessionPasswordNeededError):
        await client.sign_in(phone, sandbox.control.last_login_code(phone))
    assert not await client.is_user_authorized()

    settings = await client(functions.account.GetPasswordRequest())
    assert settings.has_password and settings.hint == "a horse"
    with pytest.raises(errors.PasswordHashInvalidError):
        await client.sign_in(password="wrong horse")
    assert not await client.is_user_authorized()

    me = await client.sign_in(password="correct horse")
    assert me.id == account.id
    assert (await client.get_me()).id == account.id


async def test_an_srp_check_is_good_for_one_attempt(clients: Clients, sandbox: Sandbox) -> None:
    phone = next_phone()
    account = sandbox.control.create_user(phone, "Replayed")
    sandbox.control.set_password(account.id, "secret")
    client = clients.raw()
    await client.connect()
    await client.send_code_request(phone)
    with pytest.raises(errors.SessionPasswordNeededError):
        await client.sign_in(phone, sandbox.control.last_login_code(phone))
    check = compute_check(await client(functions.account.GetPasswordRequest()), "secret")
    result = await client(functions.auth.CheckPasswordRequest(check))
    assert result.user.id == account.id
    with pytest.raises(errors.SrpIdInvalidError):
        await client(functions.auth.CheckPasswordRequest(check))


async def test_account_without_a_password(clients: Clients) -> None:
    client, _ = await clients.user()
    settings = await client(functions.account.GetPasswordRequest())
    assert not settings.has_password and settings.current_algo is None
    assert settings.srp_id is None and settings.new_algo is not None


async def test_the_password_survives_a_restart_as_a_verifier(tmp_path: Path) -> None:
    first = await Sandbox.start(tmp_path, key=ephemeral_key())
    phone = next_phone()
    account = first.control.create_user(phone, "Keeper")
    first.control.set_password(account.id, "kept-secret", hint="kept")
    port = first.port
    await first.stop()
    assert b"kept-secret" not in (tmp_path / WORLD_FILE).read_bytes()

    second = await Sandbox.start(tmp_path, port=port, key=ephemeral_key())
    client = new_client(second)
    try:
        await client.connect()
        await client.send_code_request(phone)
        with pytest.raises(errors.SessionPasswordNeededError):
            await client.sign_in(phone, second.control.last_login_code(phone))
        me = await client.sign_in(password="kept-secret")
        assert me.id == account.id
    finally:
        await client.disconnect()
        await second.stop()
