"""``python run.py`` with no configuration runs the whole system against the sandbox."""

from __future__ import annotations

import stat
from pathlib import Path

from protocols import session as s
from protocols.store import GetStoreStats
from runtime.client import Client
from tests.runtime.support import System, wait_until


def test_run_py_without_configuration_runs_the_demo(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        main = system.run(name="main")
        wait_until(
            lambda: (
                main.has_logged("demo user logged in through its session actor")
                or main.popen.poll() is not None
            ),
            90,
            "the demo to start",
        )
        assert main.popen.poll() is None, main.log_text()
        addresses = {a.address for a in system.status().addresses}
        assert {"echo", "session:demo", "session:reader", "store:main"} <= addresses

        with Client(system.broker) as client:
            history = client.request(
                "session:reader", s.FetchHistory(peer="switchboard_news", limit=5), timeout=10
            )
            me = client.request("session:demo", s.GetMe(), timeout=10)
            store = client.request("store:main", GetStoreStats(), timeout=10)
        assert isinstance(history, s.History)
        assert history.peer.username == "switchboard_news"
        assert [m.id for m in history.messages] == [3, 2, 1]
        assert isinstance(me, s.Me) and me.user.bot
        assert store.schema_version > 0
        assert (tmp_path / "data" / "store.sqlite3").exists()

        # The README's account commands against the running demo, through its accounts file.
        demo_config = tmp_path / "data" / "demo.toml"
        assert stat.S_IMODE(demo_config.stat().st_mode) == 0o600
        login = system.command("login", "reader", "--config", "data/demo.toml")
        assert login.returncode == 0, login.stderr
        assert login.stdout.startswith("reader is logged in as Demo Reader")
        piped = system.command("call", "session:demo", "-", input='{"type": "GetMe"}')
        assert piped.returncode == 0 and '"bot":true' in piped.stdout
        assert main.stop() == 0
        assert "Traceback" not in main.log_text()
    finally:
        system.stop_all()
