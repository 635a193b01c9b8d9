"""The [parser] settings: what is refused at load, and what python run.py then hosts."""

from __future__ import annotations

from typing import Any

import pytest

from actors import monitor_actors
from config import ConfigError, Settings, convert_settings

ACCOUNTS = {
    "r1": {"phone": "+1555000001", "api_id": 1, "api_hash": "x"},
    "r2": {"phone": "+1555000002", "api_id": 1, "api_hash": "x"},
    "newsbot": {"kind": "bot", "bot_token": "1:x", "api_id": 1, "api_hash": "x"},
}


def settings(**parser: Any) -> Settings:
    return convert_settings(Settings, {"accounts": ACCOUNTS, "parser": parser})


@pytest.mark.parametrize(
    ("parser", "problem"),
    [
        ({"readers": ["nobody"]}, "'nobody' is not a configured account"),
        ({"readers": ["newsbot"]}, "is a bot"),
        ({"readers": ["r1", "r1"]}, "listed twice"),
        ({"reconcile_min_s": 100.0, "reconcile_s": 50.0}, "must lie between"),
        ({"backfill": 5000}, "backfill"),
        ({"channel_limit": 0}, "channel_limit"),
        ({"readers": ["R1"]}, "readers"),
    ],
)
def test_bad_parser_settings_are_refused(parser: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings(**parser)


def test_the_whole_system_hosts_the_parser_only_with_readers() -> None:
    assert "parser:main" in monitor_actors(settings(readers=["r1", "r2"]))
    assert monitor_actors(settings()) == {}
