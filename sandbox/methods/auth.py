"""auth.*: phone-code login, sign-up, bot tokens, QR login tokens, log out."""

from __future__ import annotations

import secrets

from telethon.tl import functions, types

from sandbox import srp
from sandbox.backend import RpcError
from sandbox.methods import Call, handles
from sandbox.world import LoginToken, UserRec, normalize_phone, now

CODE_LENGTH = 5


def _authorization(call: Call) -> types.auth.Authorization:
    return types.auth.Authorization(user=call.world.user_view(call.me, call.me.id))


@handles(functions.auth.SendCodeRequest, auth=False)
async def send_code(call: Call, query: functions.auth.SendCodeRequest) -> types.auth.SentCode:
    """Issue a login code for a phone; the test reads it with ``last_login_code``.

    Works for unregistered phones too (they then sign up). Raises PHONE_NUMBER_INVALID.
    """
    phone = normalize_phone(query.phone_number)
    if not phone:
        raise RpcError(400, "PHONE_NUMBER_INVALID")
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH))
    phone_code_hash = secrets.token_hex(8)
    call.world.login_codes[phone] = (phone_code_hash, code)
    return types.auth.SentCode(
        type=types.auth.SentCodeTypeApp(length=CODE_LENGTH), phone_code_hash=phone_code_hash
    )


@handles(functions.auth.ResendCodeRequest, auth=False)
async def resend_code(call: Call, query: functions.auth.ResendCodeRequest) -> types.auth.SentCode:
    """A new code for a login in progress (same hash). Raises PHONE_CODE_EXPIRED otherwise.

    Telethon asks this when it still holds a hash for the phone, e.g. on a second login in
    one client; on PHONE_CODE_EXPIRED it falls back to sendCode.
    """
    phone = normalize_phone(query.phone_number)
    issued = call.world.login_codes.get(phone)
    if issued is None or issued[0] != query.phone_code_hash:
        raise RpcError(400, "PHONE_CODE_EXPIRED")
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH))
    call.world.login_codes[phone] = (query.phone_code_hash, code)
    return types.auth.SentCode(
        type=types.auth.SentCodeTypeApp(length=CODE_LENGTH), phone_code_hash=query.phone_code_hash
    )


def _log_in(call: Call, user: UserRec, phone: str = "") -> types.auth.Authorization:
    """Bind this auth key to ``user`` (its login code, if any, is used up)."""
    if phone:
        call.world.login_codes.pop(phone, None)
    call.world.bind(call.key, user)
    call.user = user
    return _authorization(call)


def _check_code(call: Call, phone: str, phone_code_hash: str, code: str | None) -> None:
    issued = call.world.login_codes.get(phone)
    if issued is None or issued[0] != phone_code_hash:
        raise RpcError(400, "PHONE_CODE_EXPIRED")
    if not code:
        raise RpcError(400, "PHONE_CODE_EMPTY")
    if code != issued[1]:
        raise RpcError(400, "PHONE_CODE_INVALID")


@handles(functions.auth.SignInRequest, auth=False)
async def sign_in(
    call: Call, query: functions.auth.SignInRequest
) -> types.auth.Authorization | types.auth.AuthorizationSignUpRequired:
    """Log in with the code; an unregistered phone answers authorizationSignUpRequired.

    Raises PHONE_CODE_EXPIRED / PHONE_CODE_EMPTY / PHONE_CODE_INVALID, and 401
    SESSION_PASSWORD_NEEDED for an account with a password: the key then waits for
    auth.checkPassword (the code stays valid until that succeeds).
    """
    phone = normalize_phone(query.phone_number)
    _check_code(call, phone, query.phone_code_hash, query.phone_code)
    user = call.world.user_by_phone(phone)
    if user is None:
        return types.auth.AuthorizationSignUpRequired()
    if user.password is not None:
        call.world.password_logins[call.key.key_id] = user.id
        raise RpcError(401, "SESSION_PASSWORD_NEEDED")
    return _log_in(call, user, phone)


@handles(functions.auth.CheckPasswordRequest, auth=False)
async def check_password(
    call: Call, query: functions.auth.CheckPasswordRequest
) -> types.auth.Authorization:
    """Finish a login that needed the password: verify the SRP proof and log the key in.

    Each srp_id from account.getPassword is good for one attempt. Raises SRP_ID_INVALID
    (unknown, used, or another key's), PASSWORD_HASH_INVALID (wrong password).
    """
    check = query.password
    if not isinstance(check, types.InputCheckPasswordSRP):
        raise RpcError(400, "PASSWORD_HASH_INVALID")
    world = call.world
    issued = world.srp_checks.pop(check.srp_id, None)
    if issued is None or issued.key_id != call.key.key_id:
        raise RpcError(400, "SRP_ID_INVALID")
    user = world.user(issued.user_id)
    password = user.password
    if password is None or not srp.check(
        password.verifier, password.salt1, password.salt2, issued.challenge, check.A, check.M1
    ):
        raise RpcError(400, "PASSWORD_HASH_INVALID")
    world.password_logins.pop(call.key.key_id, None)
    return _log_in(call, user, user.phone or "")


@handles(functions.auth.SignUpRequest, auth=False)
async def sign_up(call: Call, query: functions.auth.SignUpRequest) -> types.auth.Authorization:
    """Register the phone (after a valid code) and log in. Raises PHONE_NUMBER_OCCUPIED."""
    phone = normalize_phone(query.phone_number)
    issued = call.world.login_codes.get(phone)
    if issued is None or issued[0] != query.phone_code_hash:
        raise RpcError(400, "PHONE_CODE_EXPIRED")
    if not query.first_name.strip():
        raise RpcError(400, "FIRSTNAME_INVALID")
    user = call.world.create_user(phone, query.first_name, query.last_name)
    return _log_in(call, user, phone)


@handles(functions.auth.ImportBotAuthorizationRequest, auth=False)
async def import_bot_authorization(
    call: Call, query: functions.auth.ImportBotAuthorizationRequest
) -> types.auth.Authorization:
    """Log in as a bot with ``"<bot_id>:<secret>"``. Raises ACCESS_TOKEN_INVALID."""
    return _log_in(call, call.world.bot_by_token(query.bot_auth_token))


@handles(functions.auth.LogOutRequest)
async def log_out(call: Call, _query: functions.auth.LogOutRequest) -> types.auth.LoggedOut:
    """Detach the account from this auth key; the key itself stays valid."""
    call.world.bind(call.key, None)
    call.user = None
    return types.auth.LoggedOut()


@handles(functions.auth.ExportLoginTokenRequest, auth=False)
async def export_login_token(
    call: Call, _query: functions.auth.ExportLoginTokenRequest
) -> types.auth.LoginToken | types.auth.LoginTokenSuccess:
    """A fresh QR token, or loginTokenSuccess once another session accepted this key's token.

    Raises 401 SESSION_PASSWORD_NEEDED when the accepting account has a password: as with
    a code login, the key then waits for auth.checkPassword.
    """
    world = call.world
    for token in list(world.login_tokens.values()):
        if token.key_id == call.key.key_id and token.user_id is not None:
            del world.login_tokens[token.token]
            user = world.user(token.user_id)
            if user.password is not None:
                world.password_logins[call.key.key_id] = user.id
                raise RpcError(401, "SESSION_PASSWORD_NEEDED")
            call.user = user
            return types.auth.LoginTokenSuccess(authorization=_authorization(call))
    for stale in [t.token for t in world.login_tokens.values() if t.key_id == call.key.key_id]:
        del world.login_tokens[stale]
    token = LoginToken(
        token=secrets.token_bytes(32),
        key_id=call.key.key_id,
        expires=now() + world.limits.login_token_ttl,
    )
    world.login_tokens[token.token] = token
    return types.auth.LoginToken(expires=token.expires, token=token.token)


@handles(functions.auth.AcceptLoginTokenRequest, bots=False)
async def accept_login_token(
    call: Call, query: functions.auth.AcceptLoginTokenRequest
) -> types.Authorization:
    """Log the waiting key in as the caller and push it updateLoginToken.

    An account with a password is not logged in yet: the waiting key's next
    auth.exportLoginToken asks for the password. Raises AUTH_TOKEN_INVALID (unknown or
    already used) / AUTH_TOKEN_EXPIRED.
    """
    world = call.world
    token = world.login_tokens.get(query.token)
    if token is None or token.user_id is not None:
        raise RpcError(400, "AUTH_TOKEN_INVALID")
    if token.expires < now():
        del world.login_tokens[query.token]
        raise RpcError(400, "AUTH_TOKEN_EXPIRED")
    waiting = world.state.auth_keys.get(token.key_id)
    if waiting is None:
        raise RpcError(400, "AUTH_TOKEN_INVALID")
    token.user_id = call.me.id
    if call.me.password is None:
        world.bind(waiting, call.me)
    world.push_to_key(token.key_id, types.UpdateShort(update=types.UpdateLoginToken(), date=now()))
    return types.Authorization(
        hash=secrets.randbits(62),
        device_model="sandbox",
        platform="sandbox",
        system_version="1",
        api_id=0,
        app_name="sandbox",
        app_version="1",
        date_created=now(),
        date_active=now(),
        ip="127.0.0.1",
        country="",
        region="",
    )


@handles(functions.auth.ImportLoginTokenRequest, auth=False)
async def import_login_token(
    call: Call, query: functions.auth.ImportLoginTokenRequest
) -> types.auth.LoginTokenSuccess:
    """Finish a QR login on this key after an accept. Raises AUTH_TOKEN_INVALID."""
    token = call.world.login_tokens.get(query.token)
    if token is None or token.user_id is None or token.key_id != call.key.key_id:
        raise RpcError(400, "AUTH_TOKEN_INVALID")
    del call.world.login_tokens[query.token]
    call.user = call.world.user(token.user_id)
    return types.auth.LoginTokenSuccess(authorization=_authorization(call))
