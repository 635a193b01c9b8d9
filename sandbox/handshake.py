"""The auth key exchange, server side (https://core.telegram.org/mtproto/auth_key).

One :class:`Handshake` per connection answers ``req_pq_multi`` / ``req_pq``,
``req_DH_params`` and ``set_client_DH_params`` with Telethon's own TL classes. The auth
key is derived exactly as Telethon derives it: the integer ``g^ab mod p`` written
big-endian *without leading zero bytes* (``telethon.crypto.rsa.get_byte_array``), so in
about 1 exchange in 256 the key is 255 bytes long. Both sides then hash and slice the same
bytes and the client's "new nonce hash" check always passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha1

import rsa.prime
from telethon.crypto import AES, AuthKey
from telethon.crypto.rsa import get_byte_array
from telethon.extensions import BinaryReader
from telethon.helpers import generate_key_data_from_nonce
from telethon.tl.functions import (
    ReqDHParamsRequest,
    ReqPqMultiRequest,
    ReqPqRequest,
    SetClientDHParamsRequest,
)
from telethon.tl.tlobject import TLObject
from telethon.tl.types import (
    ClientDHInnerData,
    DhGenOk,
    DhGenRetry,
    PQInnerData,
    PQInnerDataDc,
    ResPQ,
    ServerDHInnerData,
    ServerDHParamsOk,
)

from sandbox.keys import SandboxKey

# Telegram's 2048-bit safe prime (https://core.telegram.org/mtproto/auth_key), g = 3.
DH_PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
DH_G = 3
# The spec (and Telethon) want g_a and g_b in [2^(2048-64), p - 2^(2048-64)].
_SAFETY = 2 ** (2048 - 64)
# p and q of the proof of work. Telegram's are ~31-bit, which costs Telethon's pure-Python
# factorisation ~35 ms per connect; the work protects nothing on loopback, the spec only
# asks for two distinct odd primes, and with 22-bit ones it takes ~1 ms. The size must
# keep pq's top byte below 0x80 (Telethon reads pq as a *signed* big-endian int): with
# 22-bit primes pq has 43 or 44 bits, never a multiple of 8.
_PQ_PRIME_BITS = 22


class HandshakeError(Exception):
    """The client broke the key exchange (wrong nonce, hash, key...); close the connection."""


@dataclass(frozen=True)
class NewAuthKey:
    """A finished exchange: the key bytes exactly as the client holds them, and its id."""

    key: bytes
    key_id: int


def string_session_alias(key: bytes) -> NewAuthKey | None:
    """The key a Telethon StringSession gives back for ``key``, when that differs.

    StringSession packs the key as ``struct`` ``256s``, which pads a short key with zero
    bytes *at the end*: a 255-byte key comes back as another key, with another id. The
    server accepts that alias as the same authorization (see :func:`unpadded_forms`).
    None for a full 256-byte key, which round-trips unchanged.
    """
    if len(key) >= 256:
        return None
    alias = AuthKey(key.ljust(256, b"\x00"))
    return NewAuthKey(key=alias.key, key_id=alias.key_id)


def unpadded_forms(key: bytes) -> Iterator[bytes]:
    """The shorter keys ``key`` could be the StringSession alias of, longest first.

    A 256-byte key ending in zero bytes may be ``short + zeros``; each candidate drops one
    more trailing zero. Nothing for a key that does not end in zero.
    """
    end = len(key)
    while end > 1 and key[end - 1] == 0:
        end -= 1
        yield key[:end]


def _random_exponent() -> int:
    return int.from_bytes(os.urandom(256), "big")


def _padded(data: bytes, block: int = 16) -> bytes:
    return data + os.urandom(-len(data) % block)


class Handshake:
    """The server side of key exchanges on one connection.

    :meth:`answer` takes each plaintext request in turn and returns the TL object to send
    back, plus the new key once ``set_client_DH_params`` succeeds. A new ``req_pq`` starts
    over (Telethon retries on the same connection after a failed attempt).
    ``key_id_taken`` tells whether an id is already used by another key; such an exchange
    is answered ``dh_gen_retry`` as the spec asks.
    """

    def __init__(self, key: SandboxKey, key_id_taken: Callable[[int], bool]) -> None:
        self._key = key
        self._key_id_taken = key_id_taken
        self._nonce: int | None = None
        self._server_nonce = 0
        self._p = 0
        self._q = 0
        self._new_nonce: int | None = None
        self._a = 0
        self._tmp_key = b""
        self._tmp_iv = b""

    def answer(self, request: TLObject) -> tuple[TLObject, NewAuthKey | None]:
        """The reply to one handshake request; raises HandshakeError when it is invalid."""
        if isinstance(request, ReqPqMultiRequest | ReqPqRequest):
            return self._res_pq(request.nonce), None
        if isinstance(request, ReqDHParamsRequest):
            return self._server_dh_params(request), None
        if isinstance(request, SetClientDHParamsRequest):
            return self._dh_gen(request)
        raise HandshakeError(f"unexpected plaintext request {type(request).__name__}")

    def _res_pq(self, nonce: int) -> ResPQ:
        p = rsa.prime.getprime(_PQ_PRIME_BITS)
        q = rsa.prime.getprime(_PQ_PRIME_BITS)
        while q == p:
            q = rsa.prime.getprime(_PQ_PRIME_BITS)
        self._p, self._q = min(p, q), max(p, q)
        self._nonce = nonce
        self._server_nonce = int.from_bytes(os.urandom(16), "little", signed=True)
        self._new_nonce = None
        return ResPQ(
            nonce=nonce,
            server_nonce=self._server_nonce,
            pq=get_byte_array(self._p * self._q),
            server_public_key_fingerprints=[self._key.fingerprint],
        )

    def _check_nonces(self, nonce: int, server_nonce: int) -> None:
        if self._nonce is None or nonce != self._nonce or server_nonce != self._server_nonce:
            raise HandshakeError("nonce or server_nonce does not match this exchange")

    def _server_dh_params(self, request: ReqDHParamsRequest) -> ServerDHParamsOk:
        self._check_nonces(request.nonce, request.server_nonce)
        if request.public_key_fingerprint != self._key.fingerprint:
            raise HandshakeError("req_DH_params names an unknown RSA key")
        # Telethon's Pollard-Brent sometimes returns the trivial factorisation (1, pq),
        # about once in 1,500 exchanges. Telegram would refuse it and the client would
        # reconnect; the sandbox accepts any exact factorisation, so tests never flake on it.
        if int.from_bytes(request.p, "big") * int.from_bytes(request.q, "big") != (
            self._p * self._q
        ):
            raise HandshakeError("req_DH_params carries a wrong factorisation")
        inner = self._decrypt_pq_inner_data(request.encrypted_data)
        if inner.nonce != self._nonce or inner.server_nonce != self._server_nonce:
            raise HandshakeError("p_q_inner_data nonces do not match")
        self._new_nonce = inner.new_nonce
        self._tmp_key, self._tmp_iv = generate_key_data_from_nonce(
            self._server_nonce, inner.new_nonce
        )

        self._a = _random_exponent()
        g_a = pow(DH_G, self._a, DH_PRIME)
        while not _SAFETY <= g_a <= DH_PRIME - _SAFETY:
            self._a = _random_exponent()
            g_a = pow(DH_G, self._a, DH_PRIME)
        answer = bytes(
            ServerDHInnerData(
                nonce=self._nonce,
                server_nonce=self._server_nonce,
                g=DH_G,
                dh_prime=get_byte_array(DH_PRIME),
                g_a=get_byte_array(g_a),
                server_time=int(time.time()),
            )
        )
        encrypted = AES.encrypt_ige(
            _padded(sha1(answer).digest() + answer), self._tmp_key, self._tmp_iv
        )
        return ServerDHParamsOk(
            nonce=self._nonce, server_nonce=self._server_nonce, encrypted_answer=encrypted
        )

    def _decrypt_pq_inner_data(self, encrypted: bytes) -> PQInnerData | PQInnerDataDc:
        # The old scheme, the one Telethon uses: RSA(SHA1(data) + data + padding), the
        # plaintext being 255 bytes, so the 256-byte RSA output starts with a zero byte.
        try:
            plain = self._key.decrypt_raw(encrypted)
        except ValueError as exc:
            raise HandshakeError(str(exc)) from exc
        if plain[0] != 0:
            raise HandshakeError("p_q_inner_data is not in the SHA1+data+padding form")
        digest, body = plain[1:21], plain[21:]
        reader = BinaryReader(body)
        try:
            inner = reader.tgread_object()
        except Exception as exc:
            # Undecryptable junk parses as anything: any failure is a bad ciphertext.
            raise HandshakeError("p_q_inner_data does not parse") from exc
        if sha1(body[: reader.tell_position()]).digest() != digest:
            raise HandshakeError("p_q_inner_data hash mismatch")
        if not isinstance(inner, PQInnerData | PQInnerDataDc):
            raise HandshakeError(f"unsupported inner data {type(inner).__name__}")
        return inner

    def _dh_gen(self, request: SetClientDHParamsRequest) -> tuple[TLObject, NewAuthKey | None]:
        self._check_nonces(request.nonce, request.server_nonce)
        if self._new_nonce is None:
            raise HandshakeError("set_client_DH_params before req_DH_params")
        if not request.encrypted_data or len(request.encrypted_data) % 16:
            raise HandshakeError("set_client_DH_params data is not whole AES blocks")
        plain = AES.decrypt_ige(request.encrypted_data, self._tmp_key, self._tmp_iv)
        reader = BinaryReader(plain[20:])
        try:
            inner = reader.tgread_object()
        except Exception as exc:
            raise HandshakeError("client_DH_inner_data does not parse") from exc
        if sha1(plain[20 : 20 + reader.tell_position()]).digest() != plain[:20]:
            raise HandshakeError("client_DH_inner_data hash mismatch")
        if not isinstance(inner, ClientDHInnerData):
            raise HandshakeError(f"unexpected inner data {type(inner).__name__}")
        self._check_nonces(inner.nonce, inner.server_nonce)
        g_b = int.from_bytes(inner.g_b, "big")
        if not _SAFETY <= g_b <= DH_PRIME - _SAFETY:
            raise HandshakeError("g_b outside the safe range")

        # Exactly the client's computation: AuthKey(get_byte_array(gab)), zeros stripped.
        auth_key = AuthKey(get_byte_array(pow(g_b, self._a, DH_PRIME)))
        new_nonce = self._new_nonce
        self._nonce = self._new_nonce = None  # one key per exchange
        if self._key_id_taken(auth_key.key_id):
            retry = DhGenRetry(
                nonce=inner.nonce,
                server_nonce=inner.server_nonce,
                new_nonce_hash2=auth_key.calc_new_nonce_hash(new_nonce, 2),
            )
            return retry, None
        ok = DhGenOk(
            nonce=inner.nonce,
            server_nonce=inner.server_nonce,
            new_nonce_hash1=auth_key.calc_new_nonce_hash(new_nonce, 1),
        )
        return ok, NewAuthKey(key=auth_key.key, key_id=auth_key.key_id)
