"""The base classes of every message body.

A body is a frozen msgspec Struct tagged with its class name, so a tagged union of all
bodies decodes any of them from msgpack (or JSON, for the command line) by the ``type``
field alone. A request names its reply type where it is declared, as
``class GetMe(Request[Me])``, so callers get the reply typed and checked.
"""

from __future__ import annotations

import types
from typing import ClassVar, Generic, TypeVar, Union, get_args, get_origin

import msgspec

__all__ = ["Message", "R", "Request"]


class Message(msgspec.Struct, tag=True, kw_only=True, frozen=True, omit_defaults=True):
    """Base of every body; subclasses are registered in :mod:`protocols.codec`."""


R = TypeVar("R", bound=Message)


class Request(Message, Generic[R]):
    """A body that is answered: ``Request[Reply]`` (or ``Request[A | B]``).

    ``reply`` holds the reply classes, read from the base at class creation, so
    ``Client.request`` and ``ActorContext.request`` can check what comes back. A reply
    may always be an error body (:mod:`protocols.errors`) instead.
    """

    reply: ClassVar[tuple[type[Message], ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Request:
                (declared,) = get_args(base)
                union = get_origin(declared) in (Union, types.UnionType)
                cls.reply = get_args(declared) if union else (declared,)
