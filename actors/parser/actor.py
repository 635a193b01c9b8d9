"""The ParserActor: its state, its lifecycle, and what every request goes through.

On start it subscribes to the readers' session states and to every post event, then boots
on the process's asyncio loop: it loads the watched channels from the store (waiting for
the store as long as it takes), recounts the readers' budgets, and schedules a catch-up of
every channel at once. Requests wait until the boot is done. On stop every task of the
actor is cancelled and awaited.

The handlers live with their concept (:mod:`.requests`, :mod:`.posts`, :mod:`.readers`,
:mod:`.reconciler`), mixed into this class.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from functools import partial
from typing import TypeVar

from actors.parser.parsing import RefError
from actors.parser.posts import PostWriter
from actors.parser.rations import Reader
from actors.parser.readers import ReaderPool
from actors.parser.reconciler import Reconciler
from actors.parser.requests import ChannelRequests
from actors.parser.watch import Watch
from actors.store_lists import all_channels
from config import ParserSettings
from protocols import errors
from protocols import store as st
from protocols.base import Message, Request
from protocols.envelope import Envelope
from protocols.events import post_topic, session_topic
from protocols.store import STORE_ADDRESS
from runtime.actor import Actor, ActorContext
from runtime.errors import RequestError
from runtime.loop import get_loop_thread

__all__ = ["ParserActor"]

R = TypeVar("R", bound=Message)

_BOOT_RETRY_S = 0.5


class ParserActor(ChannelRequests, PostWriter, ReaderPool, Reconciler, Actor):
    """Answers AddChannel, RemoveChannel and GetParserStatus; see :mod:`actors.parser`."""

    def __init__(self, ctx: ActorContext, settings: ParserSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.readers: dict[str, Reader] = {
            name: Reader.rationed(name, settings) for name in settings.readers
        }
        self.watches: dict[int, Watch] = {}
        self._adding: dict[str, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._ready: asyncio.Event | None = None
        self._loop = get_loop_thread()

    # -- lifecycle -------------------------------------------------------------------

    def on_start(self) -> None:
        self.ctx.subscribe(post_topic())
        for name in self.readers:
            self.ctx.subscribe(session_topic(name))
        self._loop.run(self._open(), timeout=5.0)

    def on_stop(self) -> None:
        self._loop.run(self._close(), timeout=10.0)

    async def _open(self) -> None:
        self._ready = asyncio.Event()
        self._spawn(self._boot())

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.ctx.log.error("parser task failed", exc_info=task.exception())

    async def _boot(self) -> None:
        """Load the watched channels from the store (waiting for it), then catch up."""
        while True:
            try:
                listed = await all_channels(partial(self._call, STORE_ADDRESS))
                break
            except RequestError as exc:
                self.ctx.log.info("waiting for the store", error=str(exc.error.message))
                await asyncio.sleep(_BOOT_RETRY_S)
        now = time.monotonic()
        for channel in listed:
            if channel.state == "removed":
                continue
            self._watch(channel, next_check=now)  # catch-up on start: every channel now
        self._recount_budgets(listed, now)
        for reader in self.readers.values():
            self._spawn(self._read_state(reader))
        assert self._ready is not None
        self._ready.set()
        self.ctx.log.info(
            "parser watching", channels=len(self.watches), readers=sorted(self.readers)
        )
        await self._reconcile_forever()

    def _watch(self, channel: st.Channel, next_check: float) -> Watch:
        watch = Watch(channel=channel, period=self.settings.reconcile_s, next_check=next_check)
        self.watches[channel.id] = watch
        reader = self.readers.get(channel.reader)
        if reader is not None:
            reader.channels.add(channel.id)
        return watch

    # -- every request ---------------------------------------------------------------

    async def guard(self, work: Awaitable[Message], body: Message, env: Envelope) -> Message:
        """Every request: wait until booted; failures of the parts asked become answers."""
        try:
            assert self._ready is not None
            await self._ready.wait()
            return await work
        except RequestError as exc:
            return exc.error
        except RefError as exc:
            return errors.BadRequest(message=str(exc))

    async def _call(self, target: str, body: Request[R], timeout: float = 0.0) -> R:
        return await self.ctx.call(target, body, timeout=timeout or self.settings.call_timeout_s)
