"""The base class of every message body.

A body is a frozen msgspec Struct tagged with its class name, so a tagged union of all
bodies decodes any of them from msgpack (or JSON, for the command line) by the ``type``
field alone.
"""

from __future__ import annotations

import msgspec


class Message(msgspec.Struct, tag=True, kw_only=True, frozen=True, omit_defaults=True):
    """Base of every body; subclasses are registered in :mod:`protocols.codec`."""
