"""A crashing actor is restarted within bounds, then reported failed; neighbours live on."""

from __future__ import annotations

import pytest

from protocols import demo, errors
from protocols.events import actor_topic
from runtime.client import Client
from runtime.errors import RequestError
from tests.runtime.conftest import start_node
from tests.runtime.support import Proc, System, wait_until

MAX_RESTARTS = 3


@pytest.fixture
def node(system: System, broker: Proc) -> Proc:
    system.overrides.update(
        {
            "SWITCHBOARD__SUPERVISION__MAX_RESTARTS": str(MAX_RESTARTS),
            "SWITCHBOARD__SUPERVISION__WITHIN_S": "60",
            "SWITCHBOARD__SUPERVISION__BACKOFF_INITIAL_S": "0.01",
            "SWITCHBOARD__SUPERVISION__BACKOFF_MAX_S": "0.05",
        }
    )
    return start_node(system, "crashy", "echo,echo=neighbour")


def _crash(client: Client) -> errors.Error:
    with pytest.raises(RequestError) as caught:
        client.request("echo", demo.Fail(reason="boom"))
    return caught.value.error


def test_a_crash_restarts_the_actor_with_fresh_state(node: Proc, client: Client) -> None:
    client.request("echo", demo.Increment(by=4))
    error = _crash(client)
    assert isinstance(error, errors.Internal)
    assert error.message == "RuntimeError in echo"
    assert client.request("echo", demo.GetCount()) == demo.Count(value=0)


def test_restart_intensity_is_bounded_and_failure_is_reported(
    system: System, node: Proc, client: Client
) -> None:
    with system.subscriber([actor_topic("echo")]) as events:
        wait_until(lambda: _subscribed(client), 10, "the echo actor")
        for _ in range(MAX_RESTARTS + 1):
            assert isinstance(_crash(client), errors.Internal)

        with pytest.raises(RequestError) as caught:
            client.request("echo", demo.Echo(text="anyone?"))
        assert isinstance(caught.value.error, errors.Unavailable)
        assert f"failed after {MAX_RESTARTS} restarts" in caught.value.error.message

        states = []
        while (event := events.receive(2.0)) is not None:
            states.append(event[1].state)  # type: ignore[attr-defined]
        assert states.count("restarting") == MAX_RESTARTS
        assert states[-1] == "failed"

    assert client.request("neighbour", demo.Echo(text="fine")) == demo.Echoed(text="fine")
    wait_until(lambda: "echo" in system.status().failed, 10, "status to report the failure")
    report = system.command("status")
    assert report.returncode == 0
    assert "failed actors:\n  echo: failed after 3 restarts within 60s" in report.stdout
    assert "RuntimeError: boom" in report.stdout
    assert node.popen.poll() is None


def _subscribed(client: Client) -> bool:
    return client.request("echo", demo.Echo(text="ping")) == demo.Echoed(text="ping")
