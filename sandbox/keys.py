"""The sandbox's RSA key: created once, kept in a data directory, used by the key exchange.

A Telethon client trusts the sandbox after ``telethon.crypto.rsa.add_key(key.public_pem,
old=False)``; the fingerprint the server advertises in ``resPQ`` is computed here exactly
as Telethon computes it for that PEM, so the client finds the key.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path

import rsa
import structlog
from telethon.crypto.rsa import get_byte_array
from telethon.tl.tlobject import TLObject

log = structlog.get_logger(__name__)

PRIVATE_KEY_FILE = "sandbox_rsa.pem"
PUBLIC_KEY_FILE = "sandbox_rsa.pub.pem"

# Telegram's keys are 2048-bit and Telethon pads every block to 256 bytes.
KEY_BITS = 2048
BLOCK_SIZE = KEY_BITS // 8


def fingerprint_of(public: rsa.PublicKey) -> int:
    """The 64-bit signed fingerprint Telethon computes for ``public``.

    It is the low 8 bytes of SHA1 over the TL-serialised modulus and exponent (big-endian,
    no leading zeros), read as a little-endian signed long.
    """
    n = TLObject.serialize_bytes(get_byte_array(public.n))
    e = TLObject.serialize_bytes(get_byte_array(public.e))
    return struct.unpack("<q", sha1(n + e).digest()[-8:])[0]


@dataclass(frozen=True)
class SandboxKey:
    """The server's RSA key pair and what the handshake needs from it."""

    private: rsa.PrivateKey
    public_key_path: Path | None = None

    @property
    def public(self) -> rsa.PublicKey:
        """The public half."""
        return rsa.PublicKey(self.private.n, self.private.e)

    @property
    def public_pem(self) -> bytes:
        """PKCS#1 PEM (``-----BEGIN RSA PUBLIC KEY-----``), what ``add_key`` accepts."""
        return self.public.save_pkcs1()

    @property
    def fingerprint(self) -> int:
        """The fingerprint advertised in ``resPQ`` (see :func:`fingerprint_of`)."""
        return fingerprint_of(self.public)

    def decrypt_raw(self, block: bytes) -> bytes:
        """Textbook RSA decryption of a 256-byte block, as MTProto's old scheme uses.

        Returns the 256-byte big-endian plaintext (leading zero bytes kept). Raises
        ValueError when the block is not 256 bytes or not smaller than the modulus.
        """
        if len(block) != BLOCK_SIZE:
            raise ValueError(f"RSA block must be {BLOCK_SIZE} bytes, got {len(block)}")
        value = int.from_bytes(block, "big")
        key = self.private
        if value >= key.n:
            raise ValueError("RSA block is not smaller than the modulus")
        # Blinded like rsa's own blinded_decrypt, but with the CRT: four times faster,
        # and this runs once per key exchange.
        blinded, unblinder = key.blind(value)
        m1, m2 = pow(blinded, key.exp1, key.p), pow(blinded, key.exp2, key.q)
        plain = m2 + (key.coef * (m1 - m2) % key.p) * key.q
        return key.unblind(plain, unblinder).to_bytes(BLOCK_SIZE, "big")

    @classmethod
    def generate(cls) -> SandboxKey:
        """A fresh 2048-bit key, not saved anywhere (takes a few seconds, pure Python)."""
        _, private = rsa.newkeys(KEY_BITS)
        return cls(private)

    @classmethod
    def load_or_create(cls, data_dir: str | os.PathLike[str]) -> SandboxKey:
        """The key kept in ``data_dir``, generating and saving it on first use.

        The private key is written with mode 0600, the public PEM next to it (its path is
        :attr:`public_key_path`). Raises OSError when the directory cannot be used and
        ValueError when an existing key file is not a PKCS#1 RSA private key.
        """
        directory = Path(data_dir)
        private_path = directory / PRIVATE_KEY_FILE
        public_path = directory / PUBLIC_KEY_FILE
        if private_path.exists():
            private = rsa.PrivateKey.load_pkcs1(private_path.read_bytes())
        else:
            directory.mkdir(parents=True, exist_ok=True)
            _, private = rsa.newkeys(KEY_BITS)
            _write_private(private_path, private.save_pkcs1())
            log.info("sandbox_key_created", path=str(private_path))
        key = cls(private, public_path)
        if not public_path.exists() or public_path.read_bytes() != key.public_pem:
            public_path.write_bytes(key.public_pem)
        return key


def _write_private(path: Path, pem: bytes) -> None:
    # Created with 0600 from the start: a chmod after writing would leave a window.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
