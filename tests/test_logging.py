"""Logging: JSON lines off a terminal, bound context, stdlib routed in, secrets never shown."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from config import Secret
from runtime.logging import LogThrottle, configure_logging

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
SESSION_STRING = "1" + "BVtsOK4Ah_" * 36
API_HASH = "0123456789abcdef0123456789abcdef"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_no_secrets(text: str) -> None:
    for secret in (BOT_TOKEN, SESSION_STRING, API_HASH):
        assert secret not in text


def test_json_lines_with_level_logger_timestamp_and_context() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    log = structlog.get_logger("switchboard.broker")
    with structlog.contextvars.bound_contextvars(
        node="n1", actor="counter", address="demo:counter", request_id="r-1"
    ):
        log.info("granted", epoch=3)
    log.debug("filtered out")
    (line,) = lines(out)
    assert line["event"] == "granted"
    assert line["epoch"] == 3
    assert line["level"] == "info"
    assert line["logger"] == "switchboard.broker"
    assert line["timestamp"].endswith("Z")
    assert (line["node"], line["actor"], line["address"], line["request_id"]) == (
        "n1",
        "counter",
        "demo:counter",
        "r-1",
    )


def test_console_on_a_terminal() -> None:
    out = FakeTerminal()
    configure_logging("info", "auto", out)
    structlog.get_logger("x").info("hello", answer=42)
    text = out.getvalue()
    assert "hello" in text and "answer" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_secrets_redacted_by_type_key_and_shape() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", out)
    structlog.get_logger("t").info(
        f"login with {BOT_TOKEN}",
        api_hash="plain value under a sensitive key",
        secret_thing=Secret("a secret value"),
        value=Secret(API_HASH),
        note=f"session is {SESSION_STRING}, ok",
        Bot_Token="x",
        nested={"auth_key": b"\x00" * 4, "items": [BOT_TOKEN, {"password": "pw"}]},
        obj=Exception(f"failed for {BOT_TOKEN}"),
        ids=(1, 2),
        absent_token=None,
    )
    text = out.getvalue()
    assert_no_secrets(text)
    assert "plain value" not in text and "a secret value" not in text
    (line,) = lines(out)
    assert line["event"] == "login with ***"
    assert line["api_hash"] == line["secret_thing"] == line["value"] == line["Bot_Token"] == "***"
    assert line["note"] == "session is ***, ok"
    assert line["nested"] == {"auth_key": "***", "items": ["***", {"password": "***"}]}
    assert line["ids"] == [1, 2]
    assert line["absent_token"] is None


def test_revealed_secret_values_are_redacted_where_they_leak() -> None:
    # An api_hash has no recognisable shape; it is known because a Secret holds it.
    api_hash = Secret("feedface" * 4)
    out = io.StringIO()
    configure_logging("info", "json", out)
    structlog.get_logger("t").info("connecting", url=f"https://x/?hash={api_hash.reveal()}")
    assert api_hash.reveal() not in out.getvalue()
    assert lines(out)[0]["url"] == "https://x/?hash=***"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_are_redacted(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("info", fmt, out)
    log = structlog.get_logger("t")
    try:
        raise RuntimeError(f"bad token {BOT_TOKEN} and session {SESSION_STRING}")
    except RuntimeError:
        log.exception("failed")
    try:
        raise ValueError(f"rejected {BOT_TOKEN}")
    except ValueError:
        logging.getLogger("telethon.client").exception("from a library")
    text = out.getvalue()
    assert "RuntimeError: bad token *** and session ***" in text
    assert "ValueError: rejected ***" in text
    assert_no_secrets(text)


def test_stdlib_routed_at_warning_and_above() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", out)
    with structlog.contextvars.bound_contextvars(node="n2"):
        logging.getLogger("telethon.network.mtprotosender").info("chatty detail")
        logging.getLogger("aiohttp.access").warning("slow request %s", BOT_TOKEN)
        logging.getLogger("asyncio").error("task exception")
    records = lines(out)
    assert [r["event"] for r in records] == ["slow request ***", "task exception"]
    assert records[0]["logger"] == "aiohttp.access"
    assert records[0]["level"] == "warning"
    assert records[0]["node"] == "n2"


def test_level_above_warning_applies_to_stdlib_too() -> None:
    out = io.StringIO()
    configure_logging("error", "json", out)
    logging.getLogger("telethon").warning("not shown")
    structlog.get_logger("t").warning("not shown either")
    structlog.get_logger("t").error("shown")
    assert [r["event"] for r in lines(out)] == ["shown"]


def test_idempotent_and_reconfigurable() -> None:
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("early")  # created before configuration, as modules do
    configure_logging("info", "json", first)
    configure_logging("info", "json", second)
    log.info("once")
    logging.getLogger("aiohttp").warning("once too")
    assert first.getvalue() == ""
    assert [r["event"] for r in lines(second)] == ["once", "once too"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("info", "xml")
    configure_logging("WARNING", "json", io.StringIO())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_logs_a_burst_then_counts_what_it_did_not_show() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    clock = FakeClock()
    throttle = LogThrottle(
        structlog.get_logger("broker"), "bad frame", burst=3, interval_s=10, clock=clock
    )
    for n in range(10):
        throttle(n=n)
    assert [(e["event"], e["n"], e["level"]) for e in lines(stream)] == [
        ("bad frame", 0, "warning"),
        ("bad frame", 1, "warning"),
        ("bad frame", 2, "warning"),
    ]
    clock.now = 10.0
    throttle(n=10)
    shown = lines(stream)[3:]
    assert [(e["event"], e.get("suppressed"), e.get("n")) for e in shown] == [
        ("bad frame (more not shown)", 7, None),
        ("bad frame", None, 10),
    ]
    clock.now = 25.0
    throttle(n=11)  # a quiet interval: nothing to count, just the line
    assert [e.get("n") for e in lines(stream)[5:]] == [11]
