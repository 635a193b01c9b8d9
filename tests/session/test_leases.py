"""One owner through broker restarts and owner death, with real session actors.

The world: a sandbox bot account ``demo``, hosted by node ``nA`` and by standby ``nB``,
each with its own data dir holding a copy of the same session file (what two hosts
look like: the same auth key in two places), and a broker with a data dir of its own.
Each node logs when an actor may be live ("actor starting" before its ``on_start``,
"actor stopped" after its ``on_stop``); no two such intervals of one account may
overlap. The broker is killed with SIGKILL and restarted ``SWITCHBOARD_SOAK_ROUNDS``
times (8 by default, to keep CI near a minute; ``SWITCHBOARD_SOAK_ROUNDS=20`` runs the
issue's 20, about two minutes on a busy machine): the account must stay with ``nA``,
whose actor keeps running through every restart shorter than the lease. Then ``nA`` is
killed: ``nB`` takes over within the README's bound.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import session as s
from protocols.broker import lease_bounds
from runtime.errors import RequestError
from sandbox import SandboxThread
from tests.runtime.support import (
    OWNERSHIP_TRANSPORTS,
    Proc,
    current_owner,
    live_intervals,
    overlapping,
    wait_until,
)
from tests.session.conftest import Sessions

ROUNDS = int(os.environ.get("SWITCHBOARD_SOAK_ROUNDS", "8"))
# The lease should outlast a broker restart (a new Python process) for the owner to keep
# its actor running through it: 6 s here; a restart takes 1-6 s on a busy machine.
INTERVAL_S = 0.25
LIVENESS = 24
LEASE_S, EXPIRY_S = lease_bounds(INTERVAL_S, LIVENESS)
ADDRESS = "session:demo"


@pytest.fixture(params=OWNERSHIP_TRANSPORTS)
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: SandboxThread
) -> Iterator[Sessions]:
    """The world's processes, on this run's transport and on tcp with CURVE."""
    system = Sessions(tmp_path, sandbox=sandbox, transport=request.param)
    system.write_config()
    yield system
    system.stop_all()


def _node(sessions: Sessions, node_id: str, data_dir: Path, *extra: str, name: str = "") -> Proc:
    """A node hosting ``demo`` with its own data dir (as on a host of its own)."""
    env = {"SWITCHBOARD__DATA_DIR": str(data_dir), **sessions.endpoints()}
    return sessions.node(node_id, "demo", *extra, name=name, env=env)


def _owner(sessions: Sessions) -> str | None:
    with sessions.client() as client:
        return current_owner(client, ADDRESS)


def _authorized(sessions: Sessions) -> bool:
    with sessions.client() as client:
        try:
            status = client.request(ADDRESS, s.GetSessionStatus(), timeout=2)
        except RequestError:
            return False
    return isinstance(status, s.SessionStatus) and status.state == "authorized"


def test_broker_restarts_keep_the_owner_and_owner_death_moves_the_account_once(
    sessions: Sessions,
) -> None:
    sessions.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S"] = str(INTERVAL_S)
    sessions.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS"] = str(LIVENESS)
    sessions.add_bot("demo")
    data_a, data_b = sessions.tmp / "a", sessions.tmp / "b"
    broker_env = {"SWITCHBOARD__DATA_DIR": str(sessions.tmp / "broker"), **sessions.endpoints()}
    broker = sessions.run_broker("broker-0", env=broker_env)

    # The bot logs in once on nA; nB gets a copy of the session file (same auth key).
    first = _node(sessions, "nA", data_a, name="nA-login")
    wait_until(lambda: _authorized(sessions), 60, "the bot to log in")
    assert first.stop() == 0
    shutil.copytree(data_a / "sessions", data_b / "sessions")

    owner = _node(sessions, "nA", data_a)
    wait_until(lambda: _authorized(sessions), 60, "nA to host the account")
    standby = _node(sessions, "nB", data_b, "--standby")
    wait_until(lambda: standby.has_logged("address refused"), 30, "nB to stand by")

    slow_restarts = 0
    for round_ in range(1, ROUNDS + 1):
        broker.signal(signal.SIGKILL)
        broker.popen.wait()
        killed = time.monotonic()
        broker = sessions.run_broker(f"broker-{round_}", env=broker_env)
        # A broker that took nearly the lease to come back (a very busy machine) may find
        # the owner's lease run out: it then restarts its actor, still on nA.
        slow_restarts += time.monotonic() - killed > LEASE_S - 2 * INTERVAL_S
        wait_until(lambda: _owner(sessions) == "nA", 30, f"nA to re-claim ({round_})")
        assert standby.popen.poll() is None and owner.popen.poll() is None
    wait_until(lambda: _authorized(sessions), 30, "nA to answer after the restarts")

    # nA re-claimed with its epoch every time and kept its actor running (unless a restart
    # outlasted its lease); nB never ran one.
    assert len(live_intervals(owner, "nA", ADDRESS)) <= 1 + slow_restarts
    assert live_intervals(standby, "nB", ADDRESS) == []

    owner.signal(signal.SIGKILL)
    owner.popen.wait()
    killed_at = time.time()
    took = wait_until(
        lambda: _owner(sessions) == "nB" and time.time() - killed_at,
        30,
        "nB to take over",
    )
    # The bound (README): expiry after the last heartbeat, found within a quarter interval,
    # granted at once to the waiting standby. Slack for a busy machine.
    assert isinstance(took, float) and took < (EXPIRY_S + INTERVAL_S) * 2, took
    wait_until(lambda: _authorized(sessions), 60, "nB's session to be authorized")

    intervals = [
        *live_intervals(owner, "nA", ADDRESS, ended_at=killed_at),
        *live_intervals(first, "nA", ADDRESS),
        *live_intervals(standby, "nB", ADDRESS),
    ]
    assert overlapping(intervals) == []
    assert len(live_intervals(standby, "nB", ADDRESS)) == 1
