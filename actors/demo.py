"""The demo's story: a person talks to the demo bot while the terminal says what happens.

``python run.py`` with no account configured runs the whole system against the demo
sandbox (``sandbox/demo.py``) and hands over to :class:`Demo`. This is application code,
not a sandbox feature: it speaks the bot's commands and reads the store's and parser's
protocols, as any outside client of the system would. So it lives in ``actors/`` next
to what it exercises, and the sandbox stays a Telegram server with a world in it.

- The person (a sandbox user) sends ``/start``, ``/add_channel @…`` for each demo
  channel and ``/my_channels`` to the bot, through the sandbox, as from the app, and
  reads the bot's answers and the delivered posts from the chat.
- The channels post every few seconds (the sandbox's posting stream).
- The narration reads the system over the broker (store statistics and deliveries, the
  broker's status) and prints one short line per thing that happened plus, per
  interval, the posts stored and delivered. Errors are counted from the structured log
  (:class:`ErrorCounter`), failed actors and failed deliveries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TextIO

from actors.store_lists import EVERY_CHANNEL, sync_pages
from protocols import store as st
from protocols.broker import GetStatus
from runtime.client import Client
from runtime.errors import RequestError
from sandbox.control import Message
from sandbox.demo import DEMO_READERS, DemoWorld, log_in

__all__ = ["Demo", "ErrorCounter", "Summary"]

POSTS_PER_S = 0.75  # in all demo channels together: each of three posts every 4 s
REPORT_EVERY_S = 5.0
TICK_S = 0.5
REPLY_S = 60.0
_PENDING = "⏳"  # the bot's "adding …" answer starts so until it is edited with the outcome


class ErrorCounter:
    """A text stream that passes JSON log lines on to ``out`` and counts error lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.count += text.count('"level": "error"') + text.count('"level": "critical"')
            return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return False


@dataclass
class Summary:
    """What the demo did, counted from the store (the record) and the person's chat."""

    seconds: float = 0.0
    channels: list[str] = field(default_factory=list)  # added by the person, @usernames
    stored: int = 0  # posts the store committed during this run
    delivered: int = 0  # deliveries the store recorded as sent during this run
    received: int = 0  # post copies the person has in the chat with the bot
    errors: int = 0

    def lines(self) -> list[str]:
        return [
            f"Summary after {self.seconds:.0f} s:",
            f"  channels added   {len(self.channels)} ({', '.join(self.channels) or 'none'})",
            f"  posts stored     {self.stored}",
            f"  posts delivered  {self.delivered} (the demo user's chat holds {self.received})",
            f"  errors           {self.errors}",
        ]


class Demo:
    """Plays the demo against a running system and narrates it on ``out``.

    ``client`` reaches the system's broker; ``log_errors`` counts error log lines;
    ``log_where`` says where the full logs go; ``status_url`` is the API's status page.
    """

    def __init__(
        self,
        world: DemoWorld,
        client: Client,
        out: TextIO,
        log_errors: ErrorCounter,
        log_where: str,
        status_url: str,
    ) -> None:
        self.world = world
        self.client = client
        self.out = out
        self.log_errors = log_errors
        self.log_where = log_where
        self.status_url = status_url
        self.summary = Summary()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._adding: set[str] = set()  # channels the demo user is adding now
        self._backfill: dict[str, int] = {}  # channel -> its posts in the store, until added
        self._backfilled: set[str] = set()
        self._channel_ids: dict[int, str] = {}
        self._first_seq = 0
        self._last_delivery_seq = 0
        self._failed_deliveries = 0

    def say(self, text: str) -> None:
        """Print one line of the narration (from any thread)."""
        with self._lock:
            print(f"[{time.monotonic() - self._started:5.1f}s] {text}", file=self.out, flush=True)

    # ----------------------------------------------------------------------------- story

    def play(self, stop: threading.Event, seconds: float | None) -> Summary:
        """Run the story until ``stop`` is set or ``seconds`` pass; return the summary.

        Raises TimeoutError if a reader does not connect, RequestError if the store does
        not answer.
        """
        give_up = None if seconds is None else time.monotonic() + seconds
        self._first_seq = self._store_stats().last_seq
        self._last_delivery_seq = self._first_seq
        for account in DEMO_READERS:
            user = log_in(self.client, self.world, account)
            self.say(f"reader {account} logged in as @{user.username} (session:{account})")
        control = self.world.sandbox.control
        stream = control.start_posting(list(self.world.channels), POSTS_PER_S, text="live post {n}")
        every = len(self.world.channels) / POSTS_PER_S
        self.say(
            f"channels {', '.join('@' + c for c in self.world.channels)} post every {every:g} s"
        )
        person = threading.Thread(
            target=self._person, args=(stop,), name="demo-person", daemon=True
        )
        person.start()
        last_report = time.monotonic()
        reported = (self._first_seq, self._first_seq)
        try:
            while not stop.wait(TICK_S):
                self._watch_channels()
                if time.monotonic() - last_report >= REPORT_EVERY_S:
                    last_report = time.monotonic()
                    reported = self._report(reported)
                if give_up is not None and time.monotonic() >= give_up:
                    break
        finally:
            stop.set()
            control.stop_posting(stream)
            person.join(REPLY_S)
        return self._finish()

    def _person(self, stop: threading.Event) -> None:
        """The demo user's side: commands to the bot, one after another, answers read."""
        try:
            self._command("/start", stop)
            for channel in self.world.channels:
                if stop.is_set():
                    return
                self._adding.add(channel)
                answer = self._command(f"/add_channel @{channel}", stop)
                self._adding.discard(channel)
                if answer is not None and not answer.startswith(("⚠", "❌", "⌛")):
                    self.summary.channels.append(f"@{channel}")
            self._command("/my_channels", stop)
            self.say(
                "next: posts reach the demo user as the channels post; "
                f"open {self.status_url}, or in another terminal: python run.py status"
            )
        except Exception as exc:  # the narration must say why the story stopped
            self.summary.errors += 1
            self.say(f"the demo user's script stopped: {exc!r}")

    def _command(self, text: str, stop: threading.Event) -> str | None:
        """Send ``text`` to the bot and return its settled answer (None if stopped)."""
        control = self.world.sandbox.control
        sent = control.send_message(self.world.person.id, self.world.bot.id, text)
        self.say(f"demo user -> bot: {text}")
        give_up = time.monotonic() + REPLY_S
        while time.monotonic() < give_up and not stop.wait(TICK_S):
            answer = next(
                (m for m in self._chat() if m.id > sent.id and not self._is_copy(m)), None
            )
            if answer is not None and not answer.text.startswith(_PENDING):
                first = answer.text.splitlines()[0]
                more = len(answer.text.splitlines()) - 1
                self.say(f"bot -> demo user: {first}" + (f" (+{more} lines)" if more else ""))
                return answer.text
        if not stop.is_set():
            self.summary.errors += 1
            self.say(f"no answer to {text} within {REPLY_S:g} s")
        return None

    def _is_copy(self, message: Message) -> bool:
        """Whether a bot message is a delivered post (its first line is a channel title)."""
        return message.text.split("\n", 1)[0] in self.world.channels.values()

    def _chat(self) -> list[Message]:
        """The bot's messages in the demo user's chat, oldest first."""
        chat = self.world.sandbox.control.chat(self.world.person.id, self.world.bot.id)
        return [m for m in chat if not m.out]

    # ------------------------------------------------------------------------- narration

    def _store_stats(self) -> st.StoreStats:
        return self.client.request("store:main", st.GetStoreStats(), timeout=10)  # type: ignore[no-any-return]

    def _watch_channels(self) -> None:
        """Say when a channel shows up in the store and how its backfill goes."""
        try:
            ask = partial(self.client.request, "store:main", timeout=5)
            channels = [c for page in sync_pages(ask, EVERY_CHANNEL) for c in page.channels]
            stats = st.GetStoreStats(limit=st.MAX_PAGE)
            per_channel = [row for page in sync_pages(ask, stats) for row in page.per_channel]
        except RequestError:
            return  # the store is busy or restarting: the next tick asks again
        for channel in channels:
            if channel.id not in self._channel_ids and channel.username:
                self._channel_ids[channel.id] = channel.username
                self.say(f"@{channel.username} is watched by {channel.reader or 'a reader'}")
        for row in per_channel:
            name = self._channel_ids.get(row.channel_id, "")
            if not name or name in self._backfilled:
                continue
            if name not in self._adding:
                self._backfilled.add(name)
                self.say(f"backfill of @{name} done: {row.posts} posts stored")
            elif row.posts != self._backfill.get(name):
                self._backfill[name] = row.posts
                self.say(f"backfill of @{name}: {row.posts} posts stored so far")

    def _report(self, previous: tuple[int, int]) -> tuple[int, int]:
        """Say how many posts were stored and delivered since ``previous`` (seq, count)."""
        try:
            last_seq = self._store_stats().last_seq
            self._count_deliveries()
        except RequestError:
            return previous
        stored = last_seq - previous[0]
        delivered = self.summary.delivered - previous[1]
        self.say(
            f"last {REPORT_EVERY_S:g} s: {stored} posts stored, {delivered} delivered "
            f"(this run: {last_seq - self._first_seq} stored, {self.summary.delivered} delivered)"
        )
        return last_seq, self.summary.delivered

    def _count_deliveries(self) -> None:
        """Add the deliveries recorded since the last count (sent and failed)."""
        while True:
            page = self.client.request(
                "store:main",
                st.GetDeliveries(after_seq=self._last_delivery_seq, limit=500),
                timeout=10,
            ).deliveries
            # Only settled deliveries move the count on: a pending one is looked at again.
            settled = _settled_prefix(page, lambda d: d.status != "pending")
            for delivery in settled:
                if delivery.status == "sent":
                    self.summary.delivered += 1
                elif delivery.status == "failed":
                    self._failed_deliveries += 1
            if settled:
                self._last_delivery_seq = settled[-1].seq
            if len(settled) < len(page) or len(page) < 500:
                return

    def _finish(self) -> Summary:
        summary = self.summary
        summary.seconds = time.monotonic() - self._started
        try:
            summary.stored = self._store_stats().last_seq - self._first_seq
            self._count_deliveries()
            failed = self.client.request("broker", GetStatus(), timeout=5).failed
        except RequestError as exc:
            self.say(f"the system did not answer for the summary: {exc}")
            summary.errors += 1
            failed = []
        for address in failed:
            self.say(f"actor {address} failed")
        summary.received = sum(1 for m in self._chat() if self._is_copy(m))
        summary.errors += self.log_errors.count + len(failed) + self._failed_deliveries
        return summary


def _settled_prefix(
    items: list[st.Delivery], settled: Callable[[st.Delivery], bool]
) -> list[st.Delivery]:
    """The leading items that are settled, whole seqs only (a seq is all or nothing)."""
    out: list[st.Delivery] = []
    for item in items:
        if not settled(item):
            break
        out.append(item)
    if len(out) < len(items):
        # Keep a seq together: drop the settled deliveries of the seq that is not done.
        cut = items[len(out)].seq
        out = [d for d in out if d.seq != cut]
    return out
