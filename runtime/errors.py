"""Exceptions the runtime raises to Python callers (the wire carries typed error bodies)."""

from __future__ import annotations

from typing import TypeVar, overload

from protocols import errors
from protocols.base import Message, Request
from protocols.errors import Error, NotOwner

__all__ = [
    "AddressTakenError",
    "RequestError",
    "UnexpectedReply",
    "UsageError",
    "check_reply",
]

R = TypeVar("R", bound=Message)


class RequestError(Exception):
    """A request was answered with a typed error body (``error``) instead of a result."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{type(error).__name__}: {error.message}")
        self.error = error


class UnexpectedReply(RequestError):
    """A request was answered with a body its declaration does not name (a peer's bug,
    or peers speaking different versions); ``reply`` is what came back."""

    def __init__(self, target: str, request: Message, reply: Message) -> None:
        expected = (
            " | ".join(t.__name__ for t in type(request).reply)
            if isinstance(request, Request)
            else "?"
        )
        super().__init__(
            errors.Internal(
                message=f"{target} answered {type(request).__name__} with "
                f"{type(reply).__name__}, expected {expected}"
            )
        )
        self.reply = reply


class AddressTakenError(RequestError):
    """A node asked for an address that a live node owns; ``error.owner`` names it."""

    def __init__(self, error: NotOwner) -> None:
        super().__init__(error)
        self.error: NotOwner = error


class UsageError(ValueError):
    """The command line or configuration names something that does not exist."""


@overload
def check_reply(target: str, request: Request[R], reply: Message) -> R: ...
@overload
def check_reply(target: str, request: Message, reply: Message) -> Message: ...
def check_reply(target: str, request: Message, reply: Message) -> Message:
    """``reply`` if it is a result ``request`` declares (any reply for an undeclared one).

    Raises :class:`RequestError` for an error body, :class:`UnexpectedReply` for a body
    of another type than the request's ``reply`` classes.
    """
    if isinstance(reply, Error):
        raise RequestError(reply)
    expected = type(request).reply if isinstance(request, Request) else ()
    if expected and not isinstance(reply, expected):
        raise UnexpectedReply(target, request, reply)
    return reply


class EndpointError(Exception):
    """A configured endpoint could not be bound.

    ``endpoint`` is the endpoint, ``setting`` the dotted setting that moves it, ``reason``
    the system's word for the failure and ``in_use`` True when another process holds it.
    """

    def __init__(self, endpoint: str, setting: str, reason: str, *, in_use: bool) -> None:
        env = "SWITCHBOARD__" + setting.upper().replace(".", "__")
        if in_use:
            advice = f"another process listens there; stop it or move this one with {setting}"
        else:
            advice = f"use an address of this host in {setting}"
        super().__init__(f"cannot bind {endpoint}: {reason} ({advice}, or {env})")
        self.endpoint = endpoint
        self.setting = setting
        self.in_use = in_use


class DataDirInUseError(Exception):
    """Another process runs the whole system on this data directory; the message names it."""


class BrokerUnreachableError(Exception):
    """No broker answered a node at ``endpoint`` within ``timeout`` seconds.

    ``cause`` is what the connection showed (nothing listening, a failed CURVE handshake),
    when known.
    """

    def __init__(self, endpoint: str, timeout: float, cause: str = "") -> None:
        super().__init__(
            f"no broker answered at {endpoint} within {timeout:g}s: " + (cause or NO_BROKER_ADVICE)
        )
        self.endpoint = endpoint
        self.timeout = timeout
        self.cause = cause


NO_BROKER_ADVICE = (
    "start it first (run.py --role broker) or point runtime.broker_endpoint at the running one"
)


class ExposedSecretError(Exception):
    """A file or directory that holds secrets is open to other users and cannot be
    tightened (another user owns it); the message names the path and what to do."""
