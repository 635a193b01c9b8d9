"""A test that needs a missing program skips with the install command, and fails in CI."""

from __future__ import annotations

import pytest

from tests.tools import require

ABSENT = "switchboard-no-such-program"


def test_missing_program_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"apt-get install {ABSENT}-pkg"):
        require(ABSENT, f"{ABSENT}-pkg")


def test_missing_program_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        require(ABSENT, "pkg")


def test_present_program_is_found() -> None:
    assert require("sh", "dash").endswith("/sh")
