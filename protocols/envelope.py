"""The envelope: the one packet that carries a request or a reply between addresses.

The broker reads only the envelope's header; the body stays opaque msgpack bytes
(:class:`msgspec.Raw`) until the endpoint that owns the target opens it with
:func:`protocols.codec.open_body`. So the broker never pays for, or fails on, bodies it
does not know.
"""

from __future__ import annotations

import os
import time

import msgspec


def new_id() -> str:
    """A request id unique across processes and hosts (random 128 bits, hex)."""
    return os.urandom(16).hex()


class Envelope(msgspec.Struct, tag="env", kw_only=True, omit_defaults=True):
    """A request (``reply_to`` empty) or the reply to one (``reply_to`` = its ``id``).

    ``deadline`` is absolute (Unix seconds); past it the request is answered ``Timeout``.
    ``epoch`` is stamped by the node hosting ``sender`` and checked by the broker: a packet
    from an owner whose grant was superseded is dropped (fencing).
    """

    id: str
    sender: str
    target: str
    body: msgspec.Raw
    deadline: float = 0.0
    reply_to: str = ""
    idempotency_key: str = ""
    trace_id: str = ""
    epoch: int = 0

    @property
    def is_reply(self) -> bool:
        """True when this envelope answers an earlier request."""
        return bool(self.reply_to)

    def expired(self, now: float | None = None) -> bool:
        """True when the request has a deadline and it has passed."""
        return self.deadline > 0 and (time.time() if now is None else now) >= self.deadline

    def answer(self, body: msgspec.Raw, sender: str | None = None) -> Envelope:
        """The reply envelope to this request, carrying ``body``, sent back to its sender."""
        return Envelope(
            id=new_id(),
            sender=sender or self.target,
            target=self.sender,
            body=body,
            reply_to=self.id,
            trace_id=self.trace_id,
        )
