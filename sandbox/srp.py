"""Two-step verification as Telegram does it: SRP-6a over a 2048-bit prime, server side.

The client side is Telethon's ``telethon/password.py`` (``compute_check``); every hash and
padding here mirrors it (https://core.telegram.org/api/srp). The server keeps only the
verifier ``v = g^x mod p`` of a password, never the password itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

#: The prime Telegram uses and Telethon accepts without factorising it.
P_BYTES = bytes.fromhex(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B"
)
P = int.from_bytes(P_BYTES, "big")
G = 3
#: Every number enters a hash as 256 big-endian bytes.
SIZE = 256
PBKDF2_ITERATIONS = 100_000


def _sha256(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _pad(number: int) -> bytes:
    return number.to_bytes(SIZE, "big")


#: The SRP multiplier k = H(p | g).
_K = int.from_bytes(_sha256(P_BYTES, _pad(G)), "big")


def _good_mod_exp(value: int) -> bool:
    """Telethon's ``is_good_mod_exp_first``: g^a (or g^b) far enough from 0 and from p."""
    low = SIZE * 8 - 64
    return 0 < value < P and (P - value).bit_length() >= low and value.bit_length() >= low


def verifier(password: str, salt1: bytes, salt2: bytes) -> bytes:
    """The verifier ``g^x mod p`` (256 bytes) of ``password``; ``x`` as Telethon's compute_hash.

    Costs one PBKDF2-HMAC-SHA512 with 100000 iterations (about 0.1 s).
    """
    hash1 = _sha256(salt1, password.encode(), salt1)
    hash2 = _sha256(salt2, hash1, salt2)
    hash3 = hashlib.pbkdf2_hmac("sha512", hash2, salt1, PBKDF2_ITERATIONS)
    x = int.from_bytes(_sha256(salt2, hash3, salt2), "big")
    return _pad(pow(G, x, P))


@dataclass(frozen=True)
class Challenge:
    """The server's half of one check: secret ``b`` and the ``srp_B`` sent to the client."""

    b: int
    srp_b: bytes  # B = k*v + g^b mod p, 256 bytes


def challenge(password_verifier: bytes) -> Challenge:
    """A fresh challenge for a verifier; ``g^b`` passes the client's checks on ``B - k*v``."""
    v = int.from_bytes(password_verifier, "big")
    while True:
        b = int.from_bytes(secrets.token_bytes(SIZE), "big")
        g_b = pow(G, b, P)
        big_b = (_K * v + g_b) % P
        if _good_mod_exp(g_b) and big_b > 0:
            return Challenge(b=b, srp_b=_pad(big_b))


def check(
    password_verifier: bytes,
    salt1: bytes,
    salt2: bytes,
    issued: Challenge,
    srp_a: bytes,
    m1: bytes,
) -> bool:
    """Whether the client's ``A`` and ``M1`` prove it knows the password behind the verifier.

    False (never an exception) for a wrong password or a malformed ``A``.
    """
    a = int.from_bytes(srp_a, "big")
    if len(srp_a) > SIZE or not _good_mod_exp(a):
        return False
    a_bytes = _pad(a)
    u = int.from_bytes(_sha256(a_bytes, issued.srp_b), "big")
    if u == 0:
        return False
    v = int.from_bytes(password_verifier, "big")
    s = pow(a * pow(v, u, P) % P, issued.b, P)
    k = _sha256(_pad(s))
    p_and_g = bytes(x ^ y for x, y in zip(_sha256(P_BYTES), _sha256(_pad(G)), strict=True))
    expected = _sha256(p_and_g, _sha256(salt1), _sha256(salt2), a_bytes, issued.srp_b, k)
    return hmac.compare_digest(expected, m1)
