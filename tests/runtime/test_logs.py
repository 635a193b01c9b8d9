"""What the logs say: enough to follow what happens, never a flood, no false alarms.

Real broker and node processes; each test reads the JSON lines a process wrote.
"""

from __future__ import annotations

import signal

from protocols import demo, errors
from protocols.codec import decode_packet, open_body
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import Proc, System, wait_until


def events(proc: Proc, event: str) -> list[dict[str, object]]:
    return [e for e in proc.log_events() if e.get("event") == event]


def test_debug_level_logs_each_request_with_type_and_latency(system: System) -> None:
    system.overrides["SWITCHBOARD__LOG__LEVEL"] = "debug"
    system.run_broker()
    node = start_node(system, "n1")
    with system.client() as client:
        assert client.request("echo", demo.Echo(text="hi"), timeout=10) == demo.Echoed(text="hi")
    line = wait_until(lambda: events(node, "request"), 15, "the request's debug line")[0]
    assert line["level"] == "debug"
    assert (line["address"], line["type"], line["reply"]) == ("echo", "Echo", "Echoed")
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0


def test_info_level_has_no_request_lines(system: System, broker: Proc) -> None:
    node = start_node(system, "n1")
    with system.client() as client:
        client.request("echo", demo.Echo(text="hi"), timeout=10)
    node.stop()  # everything it had to say is written
    assert not events(node, "request")


def test_a_supervised_restart_is_logged(system: System, broker: Proc) -> None:
    node = start_node(system, "n1")
    with system.client() as client:
        try:
            client.request("echo", demo.Fail(reason="on purpose"), timeout=10)
        except RequestError as exc:
            assert isinstance(exc.error, errors.Internal)
    line = wait_until(lambda: events(node, "actor restarting"), 15, "the restart line")[0]
    assert line["address"] == "echo" and line["restarts"] == 1


def test_a_standbys_refusal_is_info_not_error(system: System, broker: Proc) -> None:
    start_node(system, "owner")
    standby = start_node(system, "standby", "echo", "--standby")
    refused = wait_until(lambda: events(standby, "address refused"), 15, "the refusal")[0]
    assert refused["level"] == "info"
    assert not [e for e in standby.log_events() if e.get("level") == "error"]


def test_one_hosting_line_per_grant_across_a_broker_restart(system: System) -> None:
    # A lease (about interval x liveness) far longer than a broker restart takes: the owner
    # keeps its grant and re-claims it from the new broker.
    system.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S"] = "0.5"
    system.overrides["SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS"] = "40"
    broker = system.run_broker()
    owner = start_node(system, "owner")
    broker.signal(signal.SIGKILL)
    broker.popen.wait()
    system.run_broker()
    wait_until(lambda: system.owner_of("echo") == "owner", 30, "the owner to re-claim echo")
    with system.client() as client:
        assert client.request("echo", demo.Echo(text="a"), timeout=10) == demo.Echoed(text="a")
    owner.stop()
    assert not events(owner, "lease expired, actors stopped until the broker confirms the grant")
    assert len(events(owner, "hosting address")) == 1


def test_a_flood_of_bad_frames_is_logged_a_few_times(system: System, broker: Proc) -> None:
    sock = system.raw_dealer(b"garbler")
    try:
        for _ in range(50):
            sock.send(b"\x01garbage")
        for _ in range(50):  # every one is still answered
            assert sock.poll(10_000), "no answer"
            body = open_body(decode_packet(sock.recv()).body)
            assert isinstance(body, errors.BadRequest)
    finally:
        sock.close()
    broker.stop()
    assert len(events(broker, "bad frame")) == 5  # the burst; the rest are counted
