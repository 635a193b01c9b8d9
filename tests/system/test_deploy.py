"""The deployment examples (``config/deploy``) parsed and run as a supervisor runs them.

The supervisord programs and the systemd units must name the same six commands; the test
starts exactly those (only the interpreter, the repository and the ``--config`` path are
this machine's), restarts any that exits after a moment as ``autorestart`` /
``Restart=always`` would, and kills each role in turn with SIGKILL while a channel posts.
The /add_channel flow runs end to end, and at the end every post is stored once and
reaches the subscriber once: read back from the store and from the subscriber's chat in
the sandbox.
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import os
import re
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import run
from config import load_settings
from protocols import store as st
from protocols.broker import GetStatus, Status
from runtime.client import Client
from runtime.errors import RequestError
from sandbox import SandboxThread
from sandbox.control import Message
from tests.runtime.support import REPO, Proc, System, free_port, wait_until
from tests.session.conftest import Sessions
from tests.session.support import log_in

DEPLOY = REPO / "config" / "deploy"
ROLES = ("broker", "sessions", "store", "parser", "bot", "api")
CONFIG = "/etc/switchboard/switchboard.toml"
RESTART_S = 0.5  # the supervisor's pause before starting a program again (RestartSec)
# What each program hosts (the bot role hosts bot:<account>, here bot:newsbot).
ADDRESSES = {
    "sessions": ("session:newsbot", "session:reader"),
    "store": ("store:main",),
    "parser": ("parser:main",),
    "bot": ("bot:newsbot",),
    "api": ("api:main",),
}


def supervisor_commands() -> dict[str, list[str]]:
    """{program: argv} of supervisord.conf's programs."""
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(DEPLOY / "supervisord.conf")
    return {
        section.removeprefix("program:"): shlex.split(conf[section]["command"])
        for section in conf.sections()
        if section.startswith("program:")
    }


def systemd_units() -> dict[str, configparser.ConfigParser]:
    """{role: parsed unit} of the systemd/switchboard-<role>.service files."""
    units = {}
    for path in sorted((DEPLOY / "systemd").glob("switchboard-*.service")):
        unit = configparser.ConfigParser(interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
        unit.read(path)
        units[path.stem.removeprefix("switchboard-")] = unit
    return units


def test_supervisor_and_systemd_name_the_same_commands_that_run_py_accepts() -> None:
    programs = supervisor_commands()
    units = systemd_units()
    assert set(programs) == set(units) == set(ROLES)
    for role, unit in units.items():
        assert shlex.split(unit["Service"]["ExecStart"]) == programs[role], role
        assert unit["Service"]["Restart"] == "always"
        assert unit["Unit"]["StartLimitIntervalSec"] == "0"
        if role != "broker":
            assert unit["Unit"]["After"] == "switchboard-broker.service"
    target = configparser.ConfigParser(interpolation=None)
    target.read(DEPLOY / "systemd" / "switchboard.target")
    assert set(target["Unit"]["Wants"].split()) == {f"switchboard-{r}.service" for r in ROLES}

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(DEPLOY / "supervisord.conf")
    assert conf["group:switchboard"]["programs"].split(",") == list(ROLES)
    for role, argv in programs.items():
        assert conf[f"program:{role}"]["autorestart"] == "true"
        assert argv[1] == "run.py" and argv[argv.index("--config") + 1] == CONFIG
        args = run._parser().parse_args(run._with_default_command(argv[2:]))  # noqa: SLF001
        assert args.command == "run" and args.role == ("node" if role == "sessions" else role)
    # The example settings load, and only the sessions process hosts session actors.
    # Its secrets come from the environment file the units name, never from the file.
    assert "api_hash" not in (DEPLOY / "switchboard.toml").read_text().split("#")[0]
    secrets = dict(
        line.split("=", 1)
        for line in (DEPLOY / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for unit in (DEPLOY / "systemd").glob("*.service"):
        assert "EnvironmentFile=/etc/switchboard/secrets.env" in unit.read_text(), unit.name
    settings = load_settings(DEPLOY / "switchboard.toml", env=secrets)
    assert settings.parser.readers == ["reader"] and settings.accounts["newsbot"].kind == "bot"
    assert settings.accounts["newsbot"].bot_token is not None


class Supervisor:
    """Runs the deployment's programs and starts again any that exits (like supervisord)."""

    def __init__(self, system: Sessions, commands: dict[str, list[str]]) -> None:
        self.system = system
        self.commands = commands
        self.procs: dict[str, Proc] = {}
        self.starts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self, name: str) -> Proc:
        with self._lock:
            self.starts[name] += 1
            proc = self.system.run(*self.commands[name], name=f"{name}-{self.starts[name]}")
            self.procs[name] = proc
        if not self._thread.is_alive():
            self._thread.start()
        return proc

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for name, proc in list(self.procs.items()):
                if proc.popen.poll() is not None and not self._stop.wait(RESTART_S):
                    self.start(name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for proc in self.procs.values():
            proc.stop()


def _local(argv: list[str], config: Path) -> list[str]:
    """The program's run.py arguments with this test's settings file."""
    args = argv[2:]
    args[args.index("--config") + 1] = str(config)
    return args


def _status(client: Client) -> Status | None:
    try:
        status = client.request("broker", GetStatus(), timeout=1)
    except RequestError:
        return None
    return status if isinstance(status, Status) else None


def _serves(client: Client, role: str, pid: int) -> bool:
    """Whether process ``pid`` of ``role`` is up: the broker, or a node owning its addresses."""
    status = _status(client)
    if status is None:
        return False
    if role == "broker":
        return status.broker_pid == pid
    nodes = {n.node_id: n for n in status.nodes}
    running = {a.address: a.node_id for a in status.addresses if a.state == "running"}
    node = nodes.get(role)
    return (
        node is not None
        and node.pid == pid
        and all(running.get(address) == role for address in ADDRESSES[role])
    )


def _wait_serving(
    client: Client, supervised: Supervisor, role: str, restarted_after: int = 0
) -> None:
    """Wait until the supervisor (re)started ``role`` and that process serves."""

    def serving() -> bool:
        proc = supervised.procs[role]
        return supervised.starts[role] > restarted_after and _serves(client, role, proc.pid)

    wait_until(serving, 60, f"{role} to serve")


def _wait_stored(client: Client, channel_id: int, count: int, when: str) -> None:
    wait_until(
        lambda: _stored_count(client, channel_id) >= count, 60, f"{count} posts stored: {when}"
    )


@pytest.fixture
def supervised(sessions: Sessions, sandbox: SandboxThread) -> Iterator[Supervisor]:
    supervisor = Supervisor(sessions, {})
    yield supervisor
    supervisor.stop()


def test_the_deployed_layout_adds_a_channel_and_survives_kill_9_of_each_role(
    sessions: Sessions, sandbox: SandboxThread, supervised: Supervisor
) -> None:
    control = sandbox.control
    control.set_limits(bot_private_per_s=100, bot_private_burst=100)
    bot = sessions.add_bot("newsbot")
    phone, _ = sessions.add_user("reader")
    # The bot's own pace would deliver 1 post/s to a chat; the channel posts 3/s.
    sessions.accounts["zz_app"] = "\n".join(
        [
            "[parser]",
            'readers = ["reader"]',
            "[bot.delivery]",
            "poll_interval_s = 0.5",
            "private_per_s = 50",
        ]
    )
    config = sessions.write_config()
    sessions.overrides["SWITCHBOARD__API__PORT"] = str(free_port())
    supervised.commands.update({r: _local(a, config) for r, a in supervisor_commands().items()})
    person = control.create_user("+15557770001", "Pat", username="pat_deploy")
    control.create_channel("Deploy News", "deploynews")
    control.post_many("deploynews", 5, text="before {n}")

    with sessions.client() as client:
        for role in ROLES:
            supervised.start(role)
            if role in ("broker", "sessions"):
                _wait_serving(client, supervised, role)
        # The reader logs in once, through the one process that owns its session.
        log_in(sessions, client, "reader", phone)
        for role in ROLES:
            _wait_serving(client, supervised, role)

        # A role started twice for its address is refused like a second owner.
        second = sessions.command(
            "--role", "store", "--node-id", "store2", "--config", str(config)
        )  # fmt: skip
        assert second.returncode == 3, second.stderr
        assert "store:main" in second.stderr and "owned by" in second.stderr

        control.send_message(person.id, bot.id, "/add_channel @deploynews")
        wait_until(
            lambda: any(
                "Watching Deploy News" in m.text for m in _bot_messages(control, person.id, bot.id)
            ),
            60,
            "the bot's answer to /add_channel",
        )
        channel = client.request("store:main", st.GetChannel(username="deploynews"), timeout=10)
        subscribed_after = max(m.id for m in control.history("deploynews"))
        stream = control.start_posting("deploynews", per_second=3, text="live {n}")
        try:
            for role in ("store", "parser", "bot", "sessions", "api", "broker"):
                posted_before = len(control.history("deploynews"))
                starts = supervised.starts[role]
                os.kill(supervised.procs[role].pid, signal.SIGKILL)
                _wait_serving(client, supervised, role, restarted_after=starts)
                # The flow goes on: posts made after the restart are stored.
                _wait_stored(client, channel.id, posted_before + 3, f"{role} came back")
        finally:
            control.stop_posting(stream)

        posted = sorted(m.id for m in control.history("deploynews"))
        with contextlib.suppress(AssertionError):  # the asserts below say what is missing
            wait_until(lambda: _stored_ids(client, channel.id) == posted, 60, "every post stored")
        assert _stored_ids(client, channel.id) == posted
        # Every post made after the subscription is delivered; the backfilled ones may be
        # too (the bot reads them before or after the subscription is saved).
        live = [i for i in posted if i > subscribed_after]
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: set(live) <= set(_delivered(control, person.id, bot.id)),
                90,
                "every live post delivered",
            )
        delivered = _delivered(control, person.id, bot.id)
        assert sorted(set(live) - set(delivered)) == []  # nothing lost
        assert set(delivered) <= set(posted)
        assert len(delivered) == len(set(delivered))  # nothing twice

        # An account added to the settings is hosted by processes started for it alone.
        running = {role: supervised.procs[role].pid for role in ROLES}
        more = sessions.add_bot("morebot")
        for role, node in (("node", "sessions-more"), ("bot", "bot-more")):
            supervised.commands[node] = [
                "--role", role, "--node-id", node, "--accounts", "morebot", "--config", str(config)
            ]  # fmt: skip
            proc = supervised.start(node)
            wait_until(lambda p=proc: p.has_logged("hosting address"), 30, f"{node} to host")
        sessions.wait_state(client, "morebot", "authorized")
        control.send_message(person.id, more.id, "/start")
        wait_until(lambda: _bot_messages(control, person.id, more.id), 60, "morebot's answer")
        assert {role: supervised.procs[role].pid for role in ROLES} == running
    assert all(supervised.starts[r] >= 2 for r in ROLES)


def _bot_messages(control: Any, person: int, bot: int) -> list[Message]:
    return [m for m in control.chat(person, bot) if not m.out]


def _delivered(control: Any, person: int, bot: int) -> list[int]:
    """The message ids of the post copies in the person's chat (from their links)."""
    links = (
        re.search(r"t\.me/deploynews/(\d+)$", m.text) for m in _bot_messages(control, person, bot)
    )
    return [int(link[1]) for link in links if link]


def _stored_ids(client: Client, channel_id: int) -> list[int]:
    try:
        posts = client.request(
            "store:main", st.PostsSince(channel_ids=[channel_id], limit=1000), timeout=5
        ).posts
    except RequestError:
        return []
    return sorted(p.message_id for p in posts)


def _stored_count(client: Client, channel_id: int) -> int:
    return len(_stored_ids(client, channel_id))


def test_roles_refuse_what_they_cannot_host(tmp_path: Path) -> None:
    system = System(tmp_path)
    no_bot = system.command("--role", "bot")
    assert no_bot.returncode == 2
    assert no_bot.stderr == (
        "error: --role bot hosts a BotActor per bot account, and none is configured\n"
    )
    (tmp_path / "switchboard.toml").write_text(
        '[telegram]\napi_id = 1\napi_hash = "x"\n[accounts.alice]\nphone = "+15550001"\n'
    )
    not_a_bot = system.command("--role", "bot", "--accounts", "alice")
    assert (
        not_a_bot.returncode == 2 and "'alice' is not a configured bot account" in not_a_bot.stderr
    )
    demo_off = system.command("--demo-seconds", "5")
    assert demo_off.returncode == 2 and "--demo-seconds is for the demo" in demo_off.stderr
    assert not (tmp_path / "data" / "sandbox").exists()
