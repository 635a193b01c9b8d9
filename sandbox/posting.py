"""Posting at a high rate: many posts in one call, or a steady stream in the background.

Both post round-robin over their channels (post 1 in every channel, then post 2, ...), as
the control API's ``post`` does one at a time: stored, pushed live to connected members
(unless withheld), in the channel's pts order. Texts come from a template where ``{n}``
becomes the post's number within its channel for this batch or stream (0-based) and
``{channel}`` the channel id.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import msgspec
import structlog

from sandbox.media import check_media_kind
from sandbox.world import ChannelRec, World

log = structlog.get_logger(__name__)

#: The most posts one batch call makes (keeps the event loop responsive).
MAX_BATCH = 100_000
#: How often a stream wakes up to post what is due.
STREAM_TICK_S = 0.01


class PostRange(msgspec.Struct):
    """The posts made in one channel: ids ``first_id..last_id`` (``count`` of them)."""

    channel_id: int
    first_id: int = 0
    last_id: int = 0
    count: int = 0


class StreamStatus(msgspec.Struct):
    """A posting stream: whether it still runs, and what it posted so far."""

    id: int
    running: bool
    posted: int
    ranges: list[PostRange]


def render(template: str, n: int, channel_id: int) -> str:
    """A post's text: ``{n}`` and ``{channel}`` replaced (other braces kept as they are)."""
    return template.replace("{n}", str(n)).replace("{channel}", str(channel_id))


class _Tally:
    """Post ranges per channel, in the order the channels were given."""

    def __init__(self, channels: Sequence[ChannelRec]) -> None:
        self.ranges = {c.id: PostRange(channel_id=c.id) for c in channels}

    def note(self, channel_id: int, msg_id: int) -> None:
        entry = self.ranges[channel_id]
        entry.first_id = entry.first_id or msg_id
        entry.last_id = msg_id
        entry.count += 1

    @property
    def posted(self) -> int:
        return sum(r.count for r in self.ranges.values())


def post_batch(
    world: World,
    channels: Sequence[ChannelRec],
    count: int,
    text: str,
    media: str | None = None,
) -> list[PostRange]:
    """Make ``count`` posts in each channel now, round-robin; returns a range per channel.

    ``media``: every post carries media of that kind (see :mod:`sandbox.media`). Raises
    ValueError for no channels, a count below 1, more than MAX_BATCH posts, or an unknown
    media kind.
    """
    if not channels:
        raise ValueError("no channels to post in")
    if count < 1 or count * len(channels) > MAX_BATCH:
        raise ValueError(f"count must be 1..{MAX_BATCH // len(channels)}")
    check_media_kind(media)
    tally = _Tally(channels)
    for n in range(count):
        for channel in channels:
            msg = world.post(channel, render(text, n, channel.id), media=media)
            tally.note(channel.id, msg.id)
    return list(tally.ranges.values())


def _log_failure(task: asyncio.Task[None]) -> None:
    # A stream is a background task: nobody awaits it to see why it ended.
    if not task.cancelled() and task.exception() is not None:
        log.error("sandbox_stream_failed", exc_info=task.exception())


class Streams:
    """Background posting streams on the world's event loop."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._ids = itertools.count(1)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._tallies: dict[int, _Tally] = {}

    def start(
        self,
        channels: Sequence[ChannelRec],
        per_second: float,
        text: str,
        count: int | None = None,
        duration: float | None = None,
    ) -> int:
        """Start posting ``per_second`` posts in all (spread round-robin); returns its id.

        It stops after ``count`` posts in all, after ``duration`` seconds, or when
        stopped, whichever comes first (neither: until stopped). Raises ValueError for no
        channels or a rate that is not positive. Must run on the world's event loop.
        """
        if not channels:
            raise ValueError("no channels to post in")
        if per_second <= 0:
            raise ValueError("per_second must be > 0")
        stream_id = next(self._ids)
        tally = self._tallies[stream_id] = _Tally(channels)
        task = asyncio.get_running_loop().create_task(
            self._post_until_done(list(channels), per_second, text, count, duration, tally)
        )
        task.add_done_callback(_log_failure)
        self._tasks[stream_id] = task
        return stream_id

    async def _post_until_done(
        self,
        channels: list[ChannelRec],
        per_second: float,
        text: str,
        count: int | None,
        duration: float | None,
        tally: _Tally,
    ) -> None:
        started = time.monotonic()
        made = 0
        numbers = {c.id: 0 for c in channels}
        while True:
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                return
            due = int(elapsed * per_second) + 1
            if count is not None:
                due = min(due, count)
            while made < due:
                channel = channels[made % len(channels)]
                if channel.id not in self._world.state.channels:
                    log.warning("sandbox_stream_channel_gone", channel_id=channel.id)
                    return
                msg = self._world.post(channel, render(text, numbers[channel.id], channel.id))
                numbers[channel.id] += 1
                tally.note(channel.id, msg.id)
                made += 1
            if count is not None and made >= count:
                return
            await asyncio.sleep(STREAM_TICK_S)

    def status(self, stream_id: int) -> StreamStatus:
        """What a stream posted so far. Raises ValueError for an unknown id."""
        tally = self._tallies.get(stream_id)
        if tally is None:
            raise ValueError(f"no posting stream {stream_id}")
        return StreamStatus(
            id=stream_id,
            running=not self._tasks[stream_id].done(),
            posted=tally.posted,
            ranges=list(tally.ranges.values()),
        )

    async def stop(self, stream_id: int) -> StreamStatus:
        """Stop a stream (if it still runs) and return what it posted. ValueError if unknown."""
        task = self._tasks.get(stream_id)
        if task is None:
            raise ValueError(f"no posting stream {stream_id}")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return self.status(stream_id)

    async def stop_all(self) -> None:
        """Stop every stream (when the sandbox stops)."""
        for stream_id in list(self._tasks):
            await self.stop(stream_id)
