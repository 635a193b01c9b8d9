"""``python run.py`` with no configuration: the narrated demo, as a newcomer runs it.

The command runs in an empty directory (a fresh clone has no ``switchboard.toml`` and no
data), with only the ports moved so that tests can run side by side.
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.runtime.support import REPO, System, free_port, wait_until


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path, System]:
    system = System(
        tmp_path,
        overrides={"SWITCHBOARD__LOG__FORMAT": "auto", "SWITCHBOARD__API__PORT": str(free_port())},
    )
    env = system.env()
    out = tmp_path / "terminal.txt"
    popen = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    return popen, out, system


def _number(text: str, label: str) -> int:
    found = re.search(rf"^  {label}\s+(\d+)", text, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{text}"
    return int(found[1])


def test_demo_seconds_runs_the_whole_system_and_sums_it_up(tmp_path: Path) -> None:
    popen, out, _ = _demo(tmp_path, "--demo-seconds", "30")
    assert popen.wait(120) == 0, out.read_text()
    text = out.read_text()
    assert _number(text, "channels added") == 3
    assert "@demo_news, @demo_weather, @demo_markets" in text
    stored, delivered = _number(text, "posts stored"), _number(text, "posts delivered")
    assert stored >= 90  # three channels' backfill, then live posts
    assert delivered > 0
    assert f"the demo user's chat holds {delivered})" in text  # every delivery reached the chat
    assert _number(text, "errors") == 0
    assert "backfill of @demo_news done" in text
    assert "status page  http://127.0.0.1:" in text
    assert "Traceback" not in text and '"level"' not in text  # the log went to the file
    log = tmp_path / "data" / "switchboard.log"
    assert "full logs    data/switchboard.log" in text
    assert '"event": "hosting address"' in log.read_text()


def test_ctrl_c_stops_the_demo_cleanly_with_a_summary(tmp_path: Path) -> None:
    popen, out, system = _demo(tmp_path)
    wait_until(
        lambda: "Watching Demo News" in out.read_text() or popen.poll() is not None,
        60,
        "the bot's answer to /add_channel",
    )
    # The operator commands reach the demo's accounts through the file it wrote.
    demo_config = tmp_path / "data" / "demo.toml"
    assert stat.S_IMODE(demo_config.stat().st_mode) == 0o600
    login = system.command("login", "reader1", "--config", "data/demo.toml")
    assert login.returncode == 0, login.stderr
    assert login.stdout.startswith("reader1 is logged in as Switchboard_Reader1")
    piped = system.command("call", "session:demo", "-", input='{"type": "GetMe"}')
    assert piped.returncode == 0 and '"bot":true' in piped.stdout
    popen.send_signal(signal.SIGINT)
    assert popen.wait(60) == 0, out.read_text()
    text = out.read_text()
    assert "Summary after" in text and _number(text, "errors") == 0
    assert "Traceback" not in text
