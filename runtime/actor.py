"""What an application actor is, and what it may touch.

An :class:`Actor` is plain state plus a :meth:`Actor.handle` method. The runtime calls
``handle`` for one message at a time, in arrival order, from the actor's own thread
(see :mod:`runtime.mailbox`), so an actor needs no locks around its state. The only
ways out are the reply ``handle`` returns and the :class:`ActorContext` it was built with.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from protocols.base import Message
from protocols.codec import pack_body
from protocols.envelope import Envelope, new_id


class Port(Protocol):
    """The node, as seen from an actor's thread. Every method is thread-safe."""

    node_id: str

    def send_request(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        """Send a request; the future resolves with the reply body (errors included)."""

    def send_reply(self, envelope: Envelope) -> None:
        """Send a reply; dropped if its request was already answered (timed out)."""

    def publish(self, topic: str, event: Message) -> None:
        """Publish an event on the bus (at most once, to current subscribers)."""


class ActorContext:
    """An actor's handle on the world: its address, and sending, asking, publishing."""

    def __init__(self, address: str, port: Port) -> None:
        self.address = address
        self.epoch = 0
        self._port = port
        self.log = structlog.get_logger("actor").bind(address=address, node=port.node_id)

    @property
    def node_id(self) -> str:
        return self._port.node_id

    def publish(self, topic: str, event: Message) -> None:
        """Publish ``event`` under ``topic`` (for example ``session.alice``)."""
        self._port.publish(topic, event)

    def ask(
        self,
        target: str,
        body: Message,
        timeout: float = 10.0,
        idempotency_key: str = "",
    ) -> concurrent.futures.Future[Message]:
        """Send a request to another address; the future resolves with its reply body.

        The reply may be an error body (``protocols.errors.Error``); the future itself only
        fails if this node shuts down. It resolves with ``Timeout`` at the deadline.
        """
        envelope = Envelope(
            id=new_id(),
            sender=self.address,
            target=target,
            body=pack_body(body),
            deadline=time.time() + timeout,
            idempotency_key=idempotency_key,
            epoch=self.epoch,
        )
        return self._port.send_request(envelope)


class Actor:
    """Base class of every application actor.

    Subclasses implement :meth:`handle` and may override :meth:`on_start` and
    :meth:`on_stop`. A handler that raises is answered ``Internal`` and the actor is
    restarted by its supervisor (a fresh instance from the same factory).
    """

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx

    def on_start(self) -> None:
        """Called in the actor's thread before the first message; may raise."""

    def on_stop(self) -> None:
        """Called in the actor's thread after the last message, and before a restart."""

    def handle(
        self, body: Message, envelope: Envelope
    ) -> Message | concurrent.futures.Future[Message]:
        """Answer one request: return the reply body (an error body is a valid reply).

        Or return a future (a deferred reply): the reply is sent when it settles, and the
        actor takes its next message meanwhile. A future that raises is answered
        ``Internal``; the actor is not restarted for it. Repeats of an idempotency key
        that arrive while its first request is deferred get the same reply.
        """
        raise NotImplementedError


ActorFactory = Callable[[ActorContext], Actor]
