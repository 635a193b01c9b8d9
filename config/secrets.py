"""The secret type and the text redaction every output path shares.

A `Secret` wraps a credential (API hash, bot token, session string, API token, CURVE key)
so that printing, logging, formatting or encoding it shows ``***``; only `Secret.reveal`
gives the value. `redact_text` removes secret-shaped substrings (bot tokens, Telethon
StringSessions) and the values of every `Secret` created in this process from any text;
the logging setup runs it over everything it writes.
"""

from __future__ import annotations

import hmac
import re
import threading
from typing import Any

__all__ = [
    "BOT_TOKEN_RE",
    "REDACTED",
    "STRING_SESSION_RE",
    "Secret",
    "dec_hook",
    "describe_value",
    "enc_hook",
    "redact_text",
    "reveal_enc_hook",
]

REDACTED = "***"

# Bot API tokens: "<bot id>:<35 url-safe base64 characters>"; the bounds are loose on purpose.
BOT_TOKEN_RE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
# Telethon StringSession: version "1" then url-safe base64 of dc id, address, port and the
# 256-byte auth key (352+ characters); 300 leaves margin without matching ordinary text.
STRING_SESSION_RE = re.compile(r"1[A-Za-z0-9_-]{300,}=*")

# Values shorter than this are not searched for in text: a secret of a few characters would
# match ordinary words and numbers, and real credentials are far longer.
_MIN_KNOWN_LENGTH = 6
# Values shown in error messages longer than this are described by length only: an
# over-long value in a non-secret field is most likely a credential pasted into the wrong key.
_MAX_SHOWN_LENGTH = 20


class _KnownSecrets:
    """The values of every `Secret` created in this process, as one search pattern.

    Lets `redact_text` remove a secret's value even where it was revealed and then leaked
    into text by other code (an exception message from a library, a URL).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) < _MIN_KNOWN_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            # Longest first, so a secret containing another is removed whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_known = _KnownSecrets()


class Secret:
    """A credential whose value never shows by accident.

    ``repr`` gives ``Secret('***')``, ``str`` and ``format`` give ``***``, and the msgspec
    hooks below encode it as ``"***"``. Equality compares values in constant time. Pickling
    keeps the value, so settings can be handed to a child process.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``. Raises TypeError if it is not a str."""
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value
        _known.add(value)

    def reveal(self) -> str:
        """Return the wrapped value; call it only where the value is handed to its consumer."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def redact_text(text: str) -> str:
    """Return ``text`` with bot tokens, StringSessions and known secret values as ``***``."""
    text = BOT_TOKEN_RE.sub(REDACTED, text)
    text = STRING_SESSION_RE.sub(REDACTED, text)
    pattern = _known.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return text


def describe_value(value: Any) -> str:
    """Describe ``value`` for an error message without risking a secret in it.

    Secrets show as ``***``, long strings by their length only, and everything else as its
    repr with secret-shaped parts redacted.
    """
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str) and len(value) > _MAX_SHOWN_LENGTH:
        return f"a {len(value)}-character string"
    return redact_text(repr(value))


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook`` that encodes a `Secret` as ``"***"``.

    Raises NotImplementedError for any other unsupported type, as msgspec expects.
    """
    if isinstance(obj, Secret):
        return REDACTED
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


def reveal_enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook`` that encodes a `Secret` as its value: only for handing it on."""
    if isinstance(obj, Secret):
        return obj.reveal()
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


def dec_hook(type_: type, obj: Any) -> Any:
    """msgspec ``dec_hook`` that builds a `Secret` from a str (or passes a Secret through).

    Raises TypeError for a non-str value and NotImplementedError for other types.
    """
    if type_ is Secret:
        if isinstance(obj, Secret):
            return obj
        if isinstance(obj, str):
            return Secret(obj)
        raise TypeError(f"expected str, got {type(obj).__name__}")
    raise NotImplementedError(f"cannot decode into {type_!r}")
