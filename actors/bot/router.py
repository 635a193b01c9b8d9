"""Commands and button presses as a table of small handlers, in the style of aiogram 3.

A :class:`Router` collects handlers where they are defined::

    router = Router("channels")

    @router.command("add_channel", usage="/add_channel <@channel> [keywords…]")
    async def add_channel(args: CommandArgs, chat: Chat) -> None: ...

    @router.callback("rm:", filters=[ADMINS])
    async def remove(press: Press, chat: Chat) -> None: ...

Everything is checked when it is registered (command names as Telegram allows them,
callback prefixes that fit Telegram's 64-byte data, filters that are :class:`Filter`
objects), so a typo fails at import, not when a user sends the command. Routers are
joined with :meth:`Router.include`; lookups try the routes in registration order and the
first one whose filters all pass wins. A route that matched by name but whose filters
refused names the refusal, so the bot can say why.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

__all__ = [
    "ADMINS",
    "CommandArgs",
    "Filter",
    "Found",
    "Press",
    "Route",
    "Router",
    "Who",
]

COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit on an inline button's data

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


@dataclass(frozen=True)
class Who:
    """The sender of a command or press, and what the bot's settings say of them."""

    user_id: int
    username: str = ""
    admin: bool = False


@dataclass(frozen=True)
class CommandArgs:
    """A parsed ``/command args``: the raw argument text and its words.

    ``edited`` is set when the sender edited an earlier command message; its replies then
    replace the first ones instead of adding new messages.
    """

    command: str
    text: str
    chat_id: int
    message_id: int
    who: Who
    edited: bool = False

    @property
    def words(self) -> list[str]:
        return self.text.split()


@dataclass(frozen=True)
class Press:
    """An inline button press: ``payload`` is the data after the route's prefix."""

    data: str
    payload: str
    query_id: int
    chat_id: int
    message_id: int
    who: Who


class Filter(Protocol):
    """Decides whether a route serves ``who``; ``refusal`` is said when it does not."""

    refusal: str

    def __call__(self, who: Who) -> bool: ...


@dataclass(frozen=True)
class _Admins:
    refusal: str = "Only the bot's admins may do that."

    def __call__(self, who: Who) -> bool:
        return who.admin


ADMINS: Filter = _Admins()
"""Serves the admins listed in the ``bot.admins`` setting only."""


@dataclass(frozen=True)
class Route:
    """One registered handler: what it matches, its filters and its help text."""

    key: str
    handler: Callable[..., Awaitable[None]]
    filters: tuple[Filter, ...] = ()
    usage: str = ""
    description: str = ""

    def refusal(self, who: Who) -> str | None:
        """The refusal of the first filter that rejects ``who``, or None if all pass."""
        for check in self.filters:
            if not check(who):
                return check.refusal
        return None


@dataclass(frozen=True)
class Found:
    """The outcome of a lookup: the route to run, or why none may run (``refusal``)."""

    route: Route | None
    refusal: str = ""


@dataclass
class Router:
    """Handlers of commands and callback prefixes, plus an optional fallback."""

    name: str
    commands: list[Route] = field(default_factory=list)
    callbacks: list[Route] = field(default_factory=list)
    fallback_handler: Callable[..., Awaitable[None]] | None = None

    def command(
        self,
        name: str,
        *,
        filters: Iterable[Filter] = (),
        usage: str = "",
        description: str = "",
    ) -> Callable[[F], F]:
        """Register ``handler(args: CommandArgs, chat)`` for ``/name``.

        Raises ValueError for a name Telegram would not accept (1-32 of a-z, 0-9, _) and
        TypeError for a filter that is not callable with a ``refusal``.
        """
        if not COMMAND_NAME.match(name):
            raise ValueError(f"invalid command name {name!r}: 1-32 of a-z, 0-9 and _")
        checked = _filters(filters)

        def register(handler: F) -> F:
            self.commands.append(Route(name, handler, checked, usage, description))
            return handler

        return register

    def callback(self, prefix: str, *, filters: Iterable[Filter] = ()) -> Callable[[F], F]:
        """Register ``handler(press: Press, chat)`` for button data starting with ``prefix``.

        Raises ValueError for an empty or non-ASCII prefix, or one that leaves no room in
        Telegram's 64 bytes of data; TypeError for a bad filter.
        """
        if not prefix or not prefix.isascii() or len(prefix) >= MAX_CALLBACK_DATA:
            raise ValueError(f"invalid callback prefix {prefix!r}")
        checked = _filters(filters)

        def register(handler: F) -> F:
            self.callbacks.append(Route(prefix, handler, checked))
            return handler

        return register

    def fallback(self, handler: F) -> F:
        """Register the handler of commands no route knows. Raises ValueError if set twice."""
        if self.fallback_handler is not None:
            raise ValueError(f"router {self.name!r} already has a fallback")
        self.fallback_handler = handler
        return handler

    def include(self, *routers: Router) -> Router:
        """Append the routes of ``routers`` after this one's, in order; returns self.

        Raises ValueError when two of them set a fallback.
        """
        for router in routers:
            self.commands.extend(router.commands)
            self.callbacks.extend(router.callbacks)
            if router.fallback_handler is not None:
                self.fallback(router.fallback_handler)
        return self

    def find_command(self, name: str, who: Who) -> Found:
        """The first route for ``/name`` that serves ``who``; else why not (or nothing)."""
        return _first((r for r in self.commands if r.key == name), who)

    def find_callback(self, data: str, who: Who) -> Found:
        """The first callback route whose prefix starts ``data`` and that serves ``who``."""
        return _first((r for r in self.callbacks if data.startswith(r.key)), who)

    def visible(self, who: Who) -> list[Route]:
        """The commands ``who`` may use, once each, in registration order (for help)."""
        seen: dict[str, Route] = {}
        for route in self.commands:
            if route.key not in seen and route.refusal(who) is None:
                seen[route.key] = route
        return list(seen.values())


def _filters(filters: Iterable[Filter]) -> tuple[Filter, ...]:
    checked = tuple(filters)
    for item in checked:
        if not callable(item) or not isinstance(getattr(item, "refusal", None), str):
            raise TypeError(f"not a filter (callable with a refusal text): {item!r}")
    return checked


def _first(routes: Iterable[Route], who: Who) -> Found:
    refusal = ""
    for route in routes:
        reason = route.refusal(who)
        if reason is None:
            return Found(route)
        refusal = refusal or reason
    return Found(None, refusal)
