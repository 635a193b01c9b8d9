"""Run one actor in process, without ZeroMQ: for unit tests of an actor's logic.

:class:`ActorHarness` hosts the actor in a real :class:`runtime.mailbox.Mailbox` (its own
thread or, for an AsyncActor, a task on the loop; supervision, idempotency, one message
at a time), wired to a :class:`FakePort` that records what the actor replies, asks and
publishes, and answers its asks from a table. Cross-process guarantees (routing,
ownership, deadlines enforced by the node) stay with the multi-process tests.

    answers = {("store:main", PutPosts): PostsPut(stored=1)}
    with ActorHarness(ParserActor, answers=answers) as actor:
        reply = actor.request(AddChannel(ref="@news"))
        actor.event(post_topic(-100123), NewPost(...))
        actor.wait_for(lambda: actor.port.asks_of(PutPosts))
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from protocols import errors
from protocols.base import Message, Request
from protocols.codec import open_body, pack_body
from protocols.envelope import Envelope, new_id
from runtime.actor import ActorFactory
from runtime.errors import check_reply
from runtime.mailbox import Mailbox
from runtime.supervisor import RestartPolicy

__all__ = ["ActorHarness", "Answer", "FakePort"]

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)

Answer = Message | Callable[[Message], Message]
"""How the fake port answers an ask: a body, or a function of the asked body."""


class FakePort:
    """A node that records everything and answers asks from ``answers``.

    ``answers`` is keyed by ``(target, request type)`` or by request type alone; an ask
    with no entry is answered ``NoSuchAddress``. Every method is thread-safe.
    """

    node_id = "test-node"

    def __init__(self, answers: Mapping[Any, Answer] | None = None) -> None:
        self.answers: dict[Any, Answer] = dict(answers or {})
        self.replies: dict[str, Message] = {}
        self.asks: list[tuple[str, Message, Envelope]] = []
        self.published: list[tuple[str, Message]] = []
        self.subscriptions: list[str] = []
        self._changed = threading.Condition()

    def send_request(self, envelope: Envelope) -> concurrent.futures.Future[Message]:
        body = open_body(envelope.body)
        answer = self.answers.get((envelope.target, type(body)), self.answers.get(type(body)))
        if answer is None:
            reply: Message = errors.NoSuchAddress(
                address=envelope.target, message=f"no answer for {type(body).__name__}"
            )
        else:
            reply = answer(body) if callable(answer) else answer
        with self._changed:
            self.asks.append((envelope.target, body, envelope))
            self._changed.notify_all()
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        future.set_result(reply)
        return future

    def send_reply(self, envelope: Envelope) -> None:
        with self._changed:
            self.replies[envelope.reply_to] = open_body(envelope.body)
            self._changed.notify_all()

    def publish(self, topic: str, event: Message) -> None:
        with self._changed:
            self.published.append((topic, event))
            self._changed.notify_all()

    def subscribe(self, address: str, prefix: str) -> None:
        with self._changed:
            self.subscriptions.append(prefix)
            self._changed.notify_all()

    def asks_of(self, kind: type[M]) -> list[M]:
        """The bodies of type ``kind`` the actor asked for, in order."""
        with self._changed:
            return [body for _, body, _ in self.asks if isinstance(body, kind)]

    def events_of(self, kind: type[M]) -> list[M]:
        """The events of type ``kind`` the actor published, in order."""
        with self._changed:
            return [event for _, event in self.published if isinstance(event, kind)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Block until ``predicate()`` is truthy; AssertionError after ``timeout``."""
        give_up = time.monotonic() + timeout
        with self._changed:
            while not (value := predicate()):
                left = give_up - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
                self._changed.wait(min(left, 0.05))
        return value


class ActorHarness:
    """One actor in a real mailbox on a :class:`FakePort`; a context manager."""

    def __init__(
        self,
        factory: ActorFactory,
        *,
        address: str = "test:actor",
        answers: Mapping[Any, Answer] | None = None,
        policy: RestartPolicy | None = None,
        capacity: int = 1000,
    ) -> None:
        self.port = FakePort(answers)
        self.mailbox = Mailbox(
            address,
            factory,
            self.port,
            policy or RestartPolicy(backoff_initial_s=0.01, backoff_max_s=0.05),
            capacity,
        )

    def send(
        self,
        body: Message,
        *,
        sender: str = "client:test",
        timeout: float = 5.0,
        idempotency_key: str = "",
    ) -> str:
        """Queue a request as if it came from ``sender``; returns its id."""
        envelope = Envelope(
            id=new_id(),
            sender=sender,
            target=self.mailbox.address,
            body=pack_body(body),
            deadline=time.time() + timeout,
            idempotency_key=idempotency_key,
        )
        self.mailbox.tell(envelope)
        return envelope.id

    def reply(self, request_id: str, timeout: float = 5.0) -> Message:
        """The reply to ``request_id`` once sent; AssertionError if none in ``timeout``."""
        return self.port.wait_for(lambda: self.port.replies.get(request_id), timeout)

    def ask(self, body: Message, **kwargs: Any) -> Message:
        """Send a request and wait for its reply body (errors included)."""
        return self.reply(self.send(body, **kwargs), kwargs.get("timeout", 5.0))

    def request(self, body: Request[R], **kwargs: Any) -> R:
        """:meth:`ask` with the reply checked as clients check it (RequestError on errors)."""
        return check_reply(self.mailbox.address, body, self.ask(body, **kwargs))

    def event(self, topic: str, event: Message) -> None:
        """Deliver a bus event to the actor's mailbox, as the node's bus listener does."""
        assert self.mailbox.deliver(topic, event), "mailbox full"

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        return self.port.wait_for(predicate, timeout)

    def stop(self) -> None:
        self.mailbox.stop(timeout=10.0)

    def __enter__(self) -> ActorHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
