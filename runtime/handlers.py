"""Handlers declared at their definition: ``@handles(Echo)`` on an actor's method.

An actor class's handlers form a table from message type to method, built once when
the class is created (:func:`table`), in the spirit of aiogram's routers: reading the
decorators of a class tells every message it answers. A handler takes the message, and
the request's envelope if it declares a second parameter; it may be a coroutine
function, which the actor runs on the process's asyncio loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from protocols.base import Message

__all__ = ["Handler", "handles", "table"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__switchboard_handles__"


def handles(*types: type[Message]) -> Callable[[F], F]:
    """Mark a method as the handler of each message type in ``types``.

    Raises TypeError when no type is given or one is not a :class:`Message` subclass.
    """
    if not types:
        raise TypeError("@handles needs at least one message type")
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, Message)):
            raise TypeError(f"@handles takes Message subclasses, not {kind!r}")

    def mark(method: F) -> F:
        setattr(method, _MARK, (*getattr(method, _MARK, ()), *types))
        return method

    return mark


@dataclass(frozen=True)
class Handler:
    """One entry of a handler table: which method, and how to call it."""

    name: str
    wants_envelope: bool
    is_async: bool

    def bind(self, actor: object) -> Callable[..., Any]:
        return getattr(actor, self.name)


def table(cls: type) -> Mapping[type[Message], Handler]:
    """The handler table of ``cls``: its own handlers over those it inherits.

    Raises TypeError when one class declares two handlers for the same type.
    """
    found: dict[type[Message], Handler] = {}
    for klass in reversed(cls.__mro__):
        own: dict[type[Message], str] = {}
        for name, member in vars(klass).items():
            for kind in getattr(member, _MARK, ()):
                if kind in own:
                    raise TypeError(
                        f"{klass.__name__} handles {kind.__name__} twice: {own[kind]} and {name}"
                    )
                own[kind] = name
                found[kind] = _describe(name, member)
    return found


def _describe(name: str, method: Callable[..., Any]) -> Handler:
    params = list(inspect.signature(method).parameters)
    return Handler(
        name=name,
        wants_envelope=len(params) >= 3,  # self, message, envelope
        is_async=inspect.iscoroutinefunction(method),
    )
