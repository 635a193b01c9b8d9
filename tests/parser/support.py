"""The channel monitor as the user runs it, for end-to-end tests and benchmarks.

A sandbox in this process; a broker, a node hosting the reader accounts' session actors,
a node hosting ``store:main`` (a real SQLite file) and a node hosting ``parser:main``,
each a ``python run.py`` process, so any of them can be killed with SIGKILL and started
again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from telethon import utils
from telethon.tl import types

from protocols import parser as p
from protocols import session as s
from protocols import store as st
from runtime.client import Client
from sandbox.control import Channel
from tests.runtime.support import Proc, wait_until
from tests.session.conftest import Sessions
from tests.session.support import log_in

# Readers in tests are not rationed by the session's proactive limits (the parser's own
# budgets are what the tests exercise).
RELAXED = (
    "{ resolve = { rate_per_s = 1000.0, burst = 1000 }, "
    "join = { rate_per_s = 1000.0, burst = 1000 }, "
    "history = { rate_per_s = 1000.0, burst = 1000 } }"
)
# Short reconcile periods and generous budgets: tests take seconds, not hours.
FAST_PARSER = {
    "backfill": "3",
    "reconcile_min_s": "0.5",
    "reconcile_s": "2.0",
    "reconcile_max_s": "5.0",
    "calls_per_min": "3000",
    "resolves_per_min": "1000",
    "resolves_per_day": "100000",
    "joins_per_hour": "1000",
    "joins_per_day": "100000",
    "move_after_flood_s": "5.0",
    "call_timeout_s": "10.0",
}
PARSER = "parser:main"
STORE = "store:main"
TIMEOUT = 30.0


def marked(channel: Channel) -> int:
    """The marked id (``-100…``) the parser and store use for a sandbox channel."""
    return utils.get_peer_id(types.PeerChannel(channel.id))


@dataclass
class Monitor(Sessions):
    """A monitor system: ``readers`` user accounts and a ``[parser]`` section."""

    parser: dict[str, str] = field(default_factory=dict)
    readers: list[str] = field(default_factory=list)
    users: dict[str, s.User] = field(default_factory=dict)
    procs_by_name: dict[str, Proc] = field(default_factory=dict)

    def write_config(self) -> Path:
        path = super().write_config()
        if self.parser:
            readers = ", ".join(f'"{name}"' for name in self.readers)
            lines = ["[parser]", f"readers = [{readers}]"]
            lines += [f"{key} = {value}" for key, value in self.parser.items()]
            with path.open("a") as config:
                config.write("\n".join(lines) + "\n")
        return path

    def start(self, readers: list[str], client_factory: Callable[[], Client]) -> Client:
        """Start every process; log the readers in; returns a client once the parser
        answers."""
        self.readers = readers
        phones: dict[str, str] = {}
        for name in readers:
            phones[name], self.users[name] = self.add_user(name, limits=RELAXED)
        self.write_config()
        self.run_broker()
        client = client_factory()
        self.procs_by_name["readers"] = self.node("readers", ",".join(readers))
        for name, phone in phones.items():
            log_in(self, client, name, phone)
        self.start_store()
        self.start_parser(client)
        return client

    def start_store(self) -> Proc:
        proc = self.service("store", "store=store:main")
        self.procs_by_name["store"] = proc
        return proc

    def start_parser(self, client: Client) -> Proc:
        proc = self.service("monitor", "parser=parser:main")
        self.procs_by_name["monitor"] = proc
        wait_until(
            lambda: _answers(client, PARSER, p.GetParserStatus()), TIMEOUT, "the parser to answer"
        )
        return proc

    def restart_readers(self) -> Proc:
        names = ",".join(self.readers)
        proc = self.node("readers", names)
        self.procs_by_name["readers"] = proc
        return proc

    def service(self, node_id: str, actors: str) -> Proc:
        """A node process hosting ``actors`` and no session actor (the last --actors wins)."""
        proc = self.node(node_id, "", "--actors", actors)
        assert proc.popen.poll() is None, proc.log_text()
        return proc


def _answers(client: Client, target: str, body: p.GetParserStatus) -> bool:
    try:
        client.request(target, body, timeout=2.0)
    except Exception:  # not up yet: NoSuchAddress, Timeout
        return False
    return True


def stored_posts(client: Client, channel_id: int) -> list[st.Post]:
    """Every post the store holds of a channel (its latest version), by message id."""
    posts: list[st.Post] = []
    after = 0
    while True:
        page = client.request(
            STORE, st.PostsSince(after_seq=after, limit=1000, channel_ids=[channel_id]), TIMEOUT
        )
        posts.extend(page.posts)
        if not page.more:
            break
        after = page.posts[-1].seq
    return sorted(posts, key=lambda post: post.message_id)


def stored_ids(client: Client, channel_id: int) -> list[int]:
    return [post.message_id for post in stored_posts(client, channel_id)]
