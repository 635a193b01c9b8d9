"""Typed errors: the bodies a request may be answered with instead of its result.

Every error carries a human-readable ``message``; subclasses add what a caller needs to
act on it (who owns an address, how long to wait). Callers branch on the type, never on
the text.
"""

from __future__ import annotations

from protocols.base import Message


class Error(Message):
    """Base of every error body."""

    message: str = ""


class Owner(Message):
    """Who holds an address: the node, where it runs, and the grant's fencing epoch."""

    node_id: str
    host: str
    pid: int
    epoch: int


class Busy(Error):
    """The target's mailbox is full; nothing was done. Safe to retry later."""


class Timeout(Error):
    """The request's deadline passed before a result; it may or may not have run."""


class NotOwner(Error, kw_only=True):
    """The address is owned by someone else (named in ``owner``)."""

    address: str
    owner: Owner | None = None


class NoSuchAddress(Error, kw_only=True):
    """Nothing is registered at the target address; nothing was done."""

    address: str


class BadRequest(Error):
    """The frame or body was invalid (``message`` says why); nothing was done."""


class NotFound(Error):
    """The thing the request named does not exist."""


class FloodWait(Error, kw_only=True):
    """Rate limited: retry ``method`` after ``retry_after`` seconds."""

    retry_after: float
    method: str = ""


class Unauthorized(Error):
    """The caller, or the account behind the target, is not authorized."""


class Internal(Error):
    """The handler failed unexpectedly; ``message`` names the exception type."""


class Unavailable(Error):
    """The target exists but cannot serve now (for example, failed past its restart limit)."""


MESSAGES: tuple[type[Message], ...] = (
    Busy,
    Timeout,
    NotOwner,
    NoSuchAddress,
    BadRequest,
    NotFound,
    FloodWait,
    Unauthorized,
    Internal,
    Unavailable,
)
