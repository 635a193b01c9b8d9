"""What an application actor is, and what it may touch.

An :class:`Actor` is plain state plus handlers declared with
:func:`runtime.handlers.handles`. The runtime calls :meth:`Actor.handle` for one request
at a time and :meth:`Actor.on_event` for one bus event at a time, in arrival order, from
the actor's own thread, or for an :class:`AsyncActor` from the process's asyncio loop (see
:mod:`runtime.mailbox`), so an actor needs no locks around its state. The only ways out
are the reply a handler returns and the :class:`ActorContext` it was built with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

import structlog

from protocols import errors
from protocols.base import Message, Request
from protocols.codec import pack_body
from protocols.envelope import Envelope, new_id
from runtime.errors import check_reply
from runtime.handlers import Handler, table
from runtime.loop import get_loop_thread

__all__ = ["Actor", "ActorContext", "ActorFactory", "AsyncActor", "Port", "Reply", "on_loop"]

R = TypeVar("R", bound=Message)

Reply = Message | concurrent.futures.Future[Message]
"""What a request handler gives back: the reply body, or a future of it (deferred)."""


class Port(Protocol):
    """The node, as seen from an actor's thread. Every method is thread-safe."""

    node_id: str

    def send_request(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        """Send a request; the future resolves with the reply body (errors included)."""

    def send_reply(self, envelope: Envelope) -> None:
        """Send a reply; dropped if its request was already answered (timed out)."""

    @property
    def backlog(self) -> int:
        """Messages waiting in this actor's mailbox behind the one being handled."""
        return self._backlog()

    def publish(self, topic: str, event: Message) -> None:
        """Publish an event on the bus (at most once, to current subscribers)."""

    def subscribe(self, address: str, prefix: str) -> None:
        """Deliver bus events whose topic starts with ``prefix`` to ``address``'s mailbox."""


class ActorContext:
    """An actor's handle on the world: its address, and sending, asking, publishing."""

    def __init__(self, address: str, port: Port, backlog: Callable[[], int] = lambda: 0) -> None:
        self.address = address
        self.epoch = 0
        self._port = port
        self._backlog = backlog
        self.log = structlog.get_logger("actor").bind(address=address, node=port.node_id)

    @property
    def node_id(self) -> str:
        return self._port.node_id

    @property
    def backlog(self) -> int:
        """Messages waiting in this actor's mailbox behind the one being handled."""
        return self._backlog()

    def publish(self, topic: str, event: Message) -> None:
        """Publish ``event`` under ``topic`` (built by :mod:`protocols.events`)."""
        self._port.publish(topic, event)

    def subscribe(self, prefix: str) -> None:
        """Receive bus events whose topic starts with ``prefix`` in this actor's mailbox.

        They reach :meth:`Actor.on_event` one at a time, in order, like requests without a
        reply. The bus is at most once: an event published while this node was down, or
        before the subscription reached the broker, is never delivered, so an actor keeps
        what must survive in a store and catches up from there. Subscriptions outlive
        restarts of the actor and end when its address is given up.
        """
        self._port.subscribe(self.address, prefix)

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

    def request(
        self,
        target: str,
        body: Request[R],
        timeout: float = 10.0,
        idempotency_key: str = "",
    ) -> concurrent.futures.Future[R]:
        """:meth:`ask` with the reply checked: the future resolves with the declared reply.

        The future raises :class:`~runtime.errors.RequestError` carrying the typed error
        the request was answered with (``Timeout`` at the deadline), or
        :class:`~runtime.errors.UnexpectedReply` for a reply of an undeclared type.
        """
        typed: concurrent.futures.Future[R] = concurrent.futures.Future()

        def settle(asked: concurrent.futures.Future[Message]) -> None:
            # The asker may have cancelled (a coroutine awaiting it was cancelled at stop).
            if not typed.set_running_or_notify_cancel():
                return
            try:
                typed.set_result(check_reply(target, body, asked.result()))
            except BaseException as exc:  # the asker gets every failure, typed or not
                typed.set_exception(exc)

        self.ask(target, body, timeout, idempotency_key).add_done_callback(settle)
        return typed

    async def call(
        self,
        target: str,
        body: Request[R],
        timeout: float = 10.0,
        idempotency_key: str = "",
    ) -> R:
        """:meth:`request` for coroutines: the declared reply, or RequestError raised."""
        return await asyncio.wrap_future(self.request(target, body, timeout, idempotency_key))


class Actor:
    """Base class of every application actor.

    Subclasses declare handlers with ``@handles(SomeRequest)`` and may override
    :meth:`on_start` and :meth:`on_stop`. A request handler returns the reply body (an
    error body is a valid reply), or a future of it; a coroutine handler runs on the
    process's asyncio loop and its result becomes a deferred reply. A request of a type
    with no handler is answered ``BadRequest`` naming the type. A handler that raises is
    answered ``Internal`` and the actor is restarted by its supervisor (a fresh instance
    from the same factory).
    """

    handlers: ClassVar[Mapping[type[Message], Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = table(cls)

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx

    def on_start(self) -> None:
        """Called in the actor's thread before the first message; may raise."""

    def on_stop(self) -> None:
        """Called in the actor's thread after the last message, and before a restart."""

    def on_idle(self) -> None:
        """Called in the actor's thread when no message waits after one was handled: the
        place to finish work batched across messages. A raise is supervised as a crash."""

    def handle(self, body: Message, envelope: Envelope) -> Reply:
        """Answer one request with the handler declared for its type.

        A deferred reply (a future, or a coroutine handler's result) is sent when it
        settles, and the actor takes its next message meanwhile. If it raises
        ``RequestError`` (an ask this handler made was refused), that typed error is the
        reply; any other exception is answered ``Internal`` and restarts the actor, as a
        crash in the handler itself does. Repeats of an idempotency key that arrive while
        its first request is deferred get the same reply.
        """
        handler = self.handlers.get(type(body))
        if handler is None:
            name = type(body).__name__
            return errors.BadRequest(message=f"{self.ctx.address} does not answer {name}")
        method = handler.bind(self)
        result = method(body, envelope) if handler.wants_envelope else method(body)
        if handler.is_async:
            return get_loop_thread().submit(self.guard(result, body, envelope))
        return result

    def on_event(self, topic: str, event: Message) -> concurrent.futures.Future[None] | None:
        """Handle one bus event (see :meth:`ActorContext.subscribe`); nothing is replied.

        An event of a type with no handler is ignored. A coroutine handler runs on the
        loop; the returned future settles when it is done (its failure is logged). A
        handler that raises here restarts the actor, as for requests.
        """
        handler = self.handlers.get(type(event))
        if handler is None:
            return None
        result = handler.bind(self)(event)
        if not handler.is_async:
            return None
        done = get_loop_thread().submit(result)
        done.add_done_callback(self._log_event_failure)
        return done

    async def guard(self, work: Awaitable[Message], body: Message, envelope: Envelope) -> Message:
        """Wrap every coroutine request handler (on the loop): deadlines, error mapping.

        The default awaits ``work`` as it is; override to map exceptions to typed errors.
        """
        return await work

    def _log_event_failure(self, done: concurrent.futures.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            self.ctx.log.error("event handler failed", exc_info=done.exception())


class AsyncActor(Actor):
    """An actor whose mailbox lives on the process's asyncio loop: no thread of its own.

    For actors that do their work in coroutines (a session actor driving Telethon): an idle
    one costs a queue and a suspended task. Messages still come one at a time, with every
    guarantee of :mod:`runtime.mailbox`. Everything runs on the loop thread, so nothing
    may block: sync handlers and ``on_idle`` must be quick, and the lifecycle hooks are
    coroutines.
    """

    async def on_start(self) -> None:  # type: ignore[override]
        """Awaited on the loop before the first message; may raise (supervised)."""

    async def on_stop(self) -> None:  # type: ignore[override]
        """Awaited on the loop after the last message, and before a restart."""


ActorFactory = Callable[[ActorContext], Actor]


def on_loop(factory: ActorFactory) -> bool:
    """True if ``factory`` builds an :class:`AsyncActor`: the class itself, or a
    ``functools.partial`` of it. Such an actor's mailbox runs on the asyncio loop."""
    built = factory.func if isinstance(factory, functools.partial) else factory
    return isinstance(built, type) and issubclass(built, AsyncActor)
