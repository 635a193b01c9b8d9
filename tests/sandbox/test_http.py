"""The control API over HTTP, driven from other processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from telethon import functions

from sandbox import Sandbox, ephemeral_key
from sandbox.backend import RpcError
from sandbox.client import new_client
from sandbox.http import ControlClient
from sandbox.keys import PRIVATE_KEY_FILE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def standalone(tmp_path: Path):
    """``python -m sandbox`` in a child process; yields the JSON line it printed."""
    # Seed the data directory with this process's key: generating one takes seconds.
    private = tmp_path / PRIVATE_KEY_FILE
    private.write_bytes(ephemeral_key().private.save_pkcs1())
    private.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = None
        for line in proc.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info is not None, "python -m sandbox printed no JSON line"
        yield info
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_standalone_sandbox_driven_over_http(standalone: dict) -> None:
    control = ControlClient(standalone["control_url"])
    assert control.health()["port"] == standalone["port"]
    bot = control.create_bot(username="http_bot")
    channel = control.create_channel(title="Remote", username="remote")
    control.add_member(channel_id=channel["id"], user_id=bot["id"], admin=True)
    post = control.post(channel="remote", text="over http", buttons=[["ok"]])
    assert post["buttons"] == [[{"text": "ok", "data": "ok"}]]
    edited = control.edit_post(channel="remote", message_id=post["id"], text="edited")
    assert edited["text"] == "edited" and edited["buttons"] == post["buttons"]
    assert [m["text"] for m in control.history(channel=str(channel["id"]))] == ["edited"]
    assert control.delete_posts(channel="remote", message_ids=[post["id"]]) == 1
    assert control.history(channel="remote") == []
    with pytest.raises(RpcError, match="USERNAME_NOT_OCCUPIED"):
        control.account(ref="nobody")
    with pytest.raises(RpcError, match="BAD_REQUEST"):
        control.call("post", nonsense=1)

    address = SimpleNamespace(
        host="127.0.0.1",
        port=standalone["port"],
        public_key_pem=Path(standalone["public_key_path"]).read_text(),
    )
    client = new_client(address)
    try:
        await client.start(bot_token=bot["token"])
        me = await client.get_me()
        assert me.id == bot["id"]
        full = await client(functions.channels.GetFullChannelRequest("remote"))
        assert full.full_chat.participants_count == 1
    finally:
        await client.disconnect()
    control.flood(method="users.getUsers", seconds=5)
    assert control.calls(method="users.getUsers")["users.getUsers"] >= 1
    control.clear_faults()


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from types import SimpleNamespace
    from sandbox.client import new_client
    from sandbox.http import ControlClient

    async def main(url, host, port, pem):
        control = ControlClient(url)
        bot = control.create_bot(username="child_bot")
        client = new_client(SimpleNamespace(host=host, port=port, public_key_pem=pem))
        await client.start(bot_token=bot["token"])
        me = await client.get_me()
        await client.disconnect()
        print(json.dumps({"bot": bot["id"], "me": me.id}))

    asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), sys.stdin.read()))
    """
)


def test_sandbox_thread_driven_from_a_child_process() -> None:
    with Sandbox.run_in_thread() as sandbox:
        user = sandbox.control.create_user("+15550009999", "Threaded")
        assert sandbox.control.account(user.id).first_name == "Threaded"
        child = subprocess.run(
            [sys.executable, "-c", CHILD, sandbox.control_url, sandbox.host, str(sandbox.port)],
            cwd=ROOT,
            input=sandbox.public_key_pem,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        assert result["me"] == result["bot"]
        assert sandbox.control.account("child_bot").id == result["bot"]
        assert sandbox.control.online(result["bot"]) is False


def test_monitor_and_bot_operations_over_http() -> None:
    with Sandbox.run_in_thread() as sandbox:
        control = ControlClient(sandbox.control_url)
        channels = [control.create_channel(title=f"H{i}", username=f"http{i}") for i in range(2)]
        ranges = control.post_many(channels=["http0", "http1"], count=3, text="{channel}/{n}")
        assert [(r["channel_id"], r["first_id"], r["last_id"]) for r in ranges] == [
            (c["id"], 1, 3) for c in channels
        ]
        stream = control.start_posting(channels="http0", per_second=500, count=5)
        status = control.stop_posting(stream=stream)
        assert status["running"] is False
        assert control.withhold_updates(channel="http1") is True
        limits = control.set_limits(channels_per_user=3, bot_private_per_s=2)
        assert (limits["channels_per_user"], limits["bot_private_per_s"]) == (3, 2)
        with pytest.raises(RpcError, match="BAD_REQUEST"):
            control.set_limits(bot_private_per_s=-1)
        bot = control.create_bot(username="limits_bot")
        user = control.create_user(phone="+15550700000", first_name="U")
        assert control.flood_chat(bot=bot["id"], chat=user["id"], seconds=5) > 0
        assert control.bot_sends(bot="limits_bot") == []
        control.send_message(sender=user["id"], to="limits_bot", text="/start")
        [received] = control.chat(account="limits_bot", peer=user["id"])
        assert (received["text"], received["out"], received["edit_date"]) == ("/start", False, None)
        assert control.memberships(account=user["id"]) == []
