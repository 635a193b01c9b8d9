"""The built-in demo conversation, spoken by ``actors.echo.EchoActor``.

It lets the runtime be seen (and measured) working before any Telegram actor exists.
"""

from __future__ import annotations

from protocols.base import Message, Request
from protocols.errors import Internal


class Echoed(Message):
    text: str = ""


class Echo(Request[Echoed]):
    """Answered with :class:`Echoed` carrying the same text."""

    text: str = ""


class Count(Message):
    """The counter's value, and how many times two messages were seen at once (always 0)."""

    value: int
    overlaps: int = 0


class Increment(Request[Count]):
    """Add ``by`` to the counter; answered with the new :class:`Count`."""

    by: int = 1


class GetCount(Request[Count]):
    """Answered with the current :class:`Count`."""


class Slept(Message):
    seconds: float


class Sleep(Request[Slept]):
    """Block the actor for ``seconds`` (to observe mailboxes and deadlines); ``Slept``."""

    seconds: float


class Later(Request[Echoed]):
    """Answered with :class:`Echoed` after ``seconds``, without blocking the actor."""

    seconds: float
    text: str = ""


class Relay(Request[Echoed]):
    """Ask ``target`` to Echo ``text`` and answer with its reply (actor-to-actor requests)."""

    target: str
    text: str = ""
    timeout: float = 5.0


class Fail(Request[Internal]):
    """Make the actor raise (to observe supervision); never answered with a result."""

    reason: str = "asked to fail"


MESSAGES: tuple[type[Message], ...] = (
    Echo,
    Echoed,
    Increment,
    GetCount,
    Count,
    Sleep,
    Slept,
    Later,
    Relay,
    Fail,
)
