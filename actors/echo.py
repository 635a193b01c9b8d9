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
from protocols.errors import BadRequest
from runtime.actor import Actor


class EchoActor(Actor):
    """Answers Echo, Increment, GetCount, Sleep, Later and Relay; raises on Fail."""

    def on_start(self) -> None:
        self.count = 0
        self.overlaps = 0
        self._inside = threading.Lock()

    def handle(
        self, body: Message, envelope: Envelope
    ) -> Message | concurrent.futures.Future[Message]:
        if isinstance(body, demo.Later):
            return self._later(body)
        if isinstance(body, demo.Relay):
            # The other actor's reply (or its error) becomes ours, without blocking.
            return self.ctx.ask(body.target, demo.Echo(text=body.text), timeout=body.timeout)
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            self._inside.acquire()
        try:
            return self._answer(body)
        finally:
            self._inside.release()

    def _later(self, body: demo.Later) -> concurrent.futures.Future[Message]:
        """A deferred reply: the actor goes on with its next message meanwhile."""
        self.count += 1
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        reply = demo.Echoed(text=body.text)
        threading.Timer(body.seconds, future.set_result, (reply,)).start()
        return future

    def _answer(self, body: Message) -> Message:
        match body:
            case demo.Echo(text=text):
                return demo.Echoed(text=text)
            case demo.Increment(by=by):
                self.count += by
                return demo.Count(value=self.count, overlaps=self.overlaps)
            case demo.GetCount():
                return demo.Count(value=self.count, overlaps=self.overlaps)
            case demo.Sleep(seconds=seconds):
                time.sleep(seconds)
                return demo.Slept(seconds=seconds)
            case demo.Fail(reason=reason):
                raise RuntimeError(reason)
        return BadRequest(message=f"{self.ctx.address} does not answer {type(body).__name__}")
