"""The built-in echo/counter actor: lets the runtime be seen and measured working.

It also checks the runtime's serialization guarantee: if two messages ever ran at once,
``Count.overlaps`` would say so.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

from protocols import demo
from protocols.base import Message
from protocols.envelope import Envelope
from runtime.actor import Actor, Reply
from runtime.handlers import handles


class EchoActor(Actor):
    """Answers Echo, Increment, GetCount, Sleep, Later and Relay; raises on Fail."""

    def on_start(self) -> None:
        self.count = 0
        self.overlaps = 0
        self._inside = threading.Lock()

    def handle(self, body: Message, envelope: Envelope) -> Reply:
        # Every handler runs inside the overlap check: two at once would be a runtime bug.
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            self._inside.acquire()
        try:
            return super().handle(body, envelope)
        finally:
            self._inside.release()

    @handles(demo.Echo)
    def echo(self, body: demo.Echo) -> Message:
        return demo.Echoed(text=body.text)

    @handles(demo.Increment)
    def increment(self, body: demo.Increment) -> Message:
        self.count += body.by
        return demo.Count(value=self.count, overlaps=self.overlaps)

    @handles(demo.GetCount)
    def get_count(self, body: demo.GetCount) -> Message:
        return demo.Count(value=self.count, overlaps=self.overlaps)

    @handles(demo.Sleep)
    def sleep(self, body: demo.Sleep) -> Message:
        time.sleep(body.seconds)
        return demo.Slept(seconds=body.seconds)

    @handles(demo.Later)
    def later(self, body: demo.Later) -> concurrent.futures.Future[Message]:
        """A deferred reply: the actor goes on with its next message meanwhile."""
        self.count += 1
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        threading.Timer(body.seconds, future.set_result, (demo.Echoed(text=body.text),)).start()
        return future

    @handles(demo.Relay)
    def relay(self, body: demo.Relay) -> concurrent.futures.Future[Message]:
        # The other actor's reply (or its error) becomes ours, without blocking.
        return self.ctx.ask(body.target, demo.Echo(text=body.text), timeout=body.timeout)

    @handles(demo.Fail)
    def fail(self, body: demo.Fail) -> Message:
        raise RuntimeError(body.reason)
