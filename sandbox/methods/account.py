"""account.*: the two-step verification password's SRP parameters."""

from __future__ import annotations

import secrets

from telethon.tl import functions, types

from sandbox import srp
from sandbox.backend import RpcError
from sandbox.methods import Call, handles
from sandbox.world import SrpCheck


def _algo(salt1: bytes, salt2: bytes) -> types.TypePasswordKdfAlgo:
    """The one KDF algorithm Telegram (and the sandbox) uses, over its 2048-bit prime."""
    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=srp.G, p=srp.P_BYTES
    )


@handles(functions.account.GetPasswordRequest, auth=False, bots=False)
async def get_password(
    call: Call, _query: functions.account.GetPasswordRequest
) -> types.account.Password:
    """The password settings of the logged-in account, or of the one whose login waits for it.

    With a password, carries a fresh SRP challenge (``srp_id``, ``srp_B``) for one
    auth.checkPassword from this auth key; it replaces the key's earlier challenges.
    Raises 401 AUTH_KEY_UNREGISTERED when the key is neither logged in nor waiting for a
    password.
    """
    world = call.world
    user_id = call.user.id if call.user is not None else world.password_logins.get(call.key.key_id)
    if user_id is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    user = world.user(user_id)
    settings = types.account.Password(
        # A client setting a password appends 32 random bytes of its own to salt1.
        new_algo=_algo(secrets.token_bytes(8), secrets.token_bytes(16)),
        new_secure_algo=types.SecurePasswordKdfAlgoPBKDF2HMACSHA512iter100000(
            salt=secrets.token_bytes(8)
        ),
        secure_random=secrets.token_bytes(32),
        has_password=user.password is not None,
    )
    if user.password is None:
        return settings
    challenge = srp.challenge(user.password.verifier)
    srp_id = secrets.randbits(63)
    for stale in [i for i, c in world.srp_checks.items() if c.key_id == call.key.key_id]:
        del world.srp_checks[stale]
    world.srp_checks[srp_id] = SrpCheck(
        key_id=call.key.key_id, user_id=user.id, challenge=challenge
    )
    settings.current_algo = _algo(user.password.salt1, user.password.salt2)
    settings.srp_B = challenge.srp_b
    settings.srp_id = srp_id
    settings.hint = user.password.hint or None
    return settings
