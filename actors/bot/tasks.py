"""Tasks the bot starts on the loop and does not await: kept, logged, cancelled at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

__all__ = ["Tasks"]


class Tasks:
    """A set of running tasks whose failures are logged as ``what failed``."""

    def __init__(self, what: str, **context: object) -> None:
        self._what = what
        self._log = structlog.get_logger("bot").bind(**context)
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the running loop (call from the loop)."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._done)

    def cancel(self) -> None:
        for task in list(self._running):
            task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error(f"{self._what} failed", exc_info=task.exception())
