"""The system's state as one report, gathered from the actors that own each part.

Nothing here reads a database or a session file: the broker tells nodes and actors
(``GetStatus``), each session actor its account (``GetSessionStatus``), the store its
counts and channels, the parser its readers. Parts are asked at once, each with a short
deadline; a part that does not answer is named in ``problems`` and the rest is still
reported. Reports are shared for :data:`MAX_AGE_S` and concurrent callers wait for one
gathering, so a crowd of status pages costs the actors one round of requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from functools import partial
from typing import Any, TypeVar

from aiohttp import web
from msgspec.structs import replace

from actors.api.base import BROKER, PARSER, STORE, Requester
from actors.store_lists import EVERY_CHANNEL, Paged, pages
from config import Settings
from protocols.api import StatusReport
from protocols.base import Message, Request
from protocols.broker import GetStatus, Status
from protocols.parser import GetParserStatus
from protocols.session import GetSessionStatus, SessionStatus
from protocols.store import MAX_PAGE, Channel, Channels, GetDeliveries, GetStoreStats, StoreStats
from runtime.errors import RequestError

__all__ = ["MAX_AGE_S", "POST_RATE", "STATUS", "PostRate", "StatusCache", "gather"]

R = TypeVar("R", bound=Message)

MAX_AGE_S = 1.0
PART_TIMEOUT_S = 2.0
CHART_MINUTES = 30
_SESSION_PREFIX = "session:"


class PostRate:
    """Posts stored per minute, as seen on the bus (at most once: a lower bound).

    Used from the event loop only.
    """

    def __init__(self) -> None:
        self._minutes: Counter[int] = Counter()
        self.total = 0

    def add(self, at: float) -> None:
        minute = int(at // 60)
        self._minutes[minute] += 1
        self.total += 1
        for old in [m for m in self._minutes if m <= minute - CHART_MINUTES]:
            del self._minutes[old]

    def series(self, now: float, minutes: int = CHART_MINUTES) -> list[int]:
        """Counts of the last ``minutes`` minutes, oldest first, the current one last."""
        current = int(now // 60)
        return [self._minutes.get(current - back, 0) for back in range(minutes - 1, -1, -1)]


async def _ask(client: Requester, target: str, body: Request[R], problems: list[str]) -> R | None:
    try:
        return await client.request(target, body, timeout=PART_TIMEOUT_S)
    except RequestError as exc:
        problems.append(f"{target}: {exc}")
        return None


async def _ask_pages(
    client: Requester, request: Paged[Any], problems: list[str]
) -> list[Any] | None:
    """Every page of a store list, or None (and a problem) if a page did not come."""
    ask = partial(client.request, STORE, timeout=PART_TIMEOUT_S)
    try:
        return [page async for page in pages(ask, request)]
    except RequestError as exc:
        problems.append(f"{STORE}: {exc}")
        return None


def _stats(found: list[StoreStats] | None) -> StoreStats | None:
    """The store's counts with the stats of every channel (from all its pages)."""
    if not found:
        return None
    return replace(found[0], per_channel=[c for p in found for c in p.per_channel], more=False)


def _channels(found: list[Channels] | None) -> list[Channel]:
    return [c for page in found or [] for c in page.channels]


def _accounts(settings: Settings, status: Status | None) -> list[str]:
    """Configured accounts, and any other session the broker knows of (other hosts)."""
    names = set(settings.accounts)
    if status is not None:
        names |= {
            a.address.removeprefix(_SESSION_PREFIX)
            for a in status.addresses
            if a.address.startswith(_SESSION_PREFIX)
        }
    return sorted(names)


async def gather(client: Requester, settings: Settings, rate: PostRate) -> StatusReport:
    """A fresh report; never raises for a part that is down (it goes into ``problems``)."""
    problems: list[str] = []
    broker, stats, channels, parser, pending, failed = await asyncio.gather(
        _ask(client, BROKER, GetStatus(), problems),
        _ask_pages(client, GetStoreStats(limit=MAX_PAGE), problems),
        _ask_pages(client, EVERY_CHANNEL, problems),
        _ask(client, PARSER, GetParserStatus(), problems),
        _ask(client, STORE, GetDeliveries(status="pending", limit=MAX_PAGE), problems),
        _ask(client, STORE, GetDeliveries(status="failed", limit=MAX_PAGE), problems),
    )
    accounts = await asyncio.gather(
        *(
            _ask(client, f"{_SESSION_PREFIX}{name}", GetSessionStatus(), problems)
            for name in _accounts(settings, broker)
        )
    )
    now = time.time()
    return StatusReport(
        generated_at=now,
        broker_uptime_s=broker.uptime_s if broker else 0.0,
        nodes=broker.nodes if broker else [],
        actors=broker.addresses if broker else [],
        failed=broker.failed if broker else [],
        accounts=[a for a in accounts if isinstance(a, SessionStatus)],
        readers=parser.readers if parser else [],
        channels=_channels(channels),
        store=_stats(stats),
        deliveries_pending=len(pending.deliveries) if pending else 0,
        deliveries_failed=len(failed.deliveries) if failed else 0,
        posts_per_minute=rate.series(now),
        problems=sorted(set(problems)),
    )


class StatusCache:
    """One report shared by everyone asking within :data:`MAX_AGE_S` (loop-only)."""

    def __init__(self, client: Requester, settings: Settings, rate: PostRate) -> None:
        self.client = client
        self.settings = settings
        self.rate = rate
        self._report: StatusReport | None = None
        self._taken_at = 0.0
        self._pending: asyncio.Task[StatusReport] | None = None

    async def get(self) -> StatusReport:
        """The latest report, gathered now if the last one is older than MAX_AGE_S."""
        if self._report is not None and time.monotonic() - self._taken_at < MAX_AGE_S:
            return self._report
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> StatusReport:
        try:
            report = await gather(self.client, self.settings, self.rate)
            self._report, self._taken_at = report, time.monotonic()
            return report
        finally:
            self._pending = None


POST_RATE = web.AppKey("post_rate", PostRate)
STATUS = web.AppKey("status", StatusCache)
