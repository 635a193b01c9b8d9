"""The broker's state file: what a restarted broker learns, and what it must not trust."""

from __future__ import annotations

from pathlib import Path

from runtime import lease_file


def test_what_is_written_is_read_back_even_addresses_with_spaces(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "grants")
    held = {"session:alice": 1700000000123, "odd name": 7}
    lease_file.write(path, held)
    assert lease_file.read(path) == held
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["grants"]  # no .tmp left


def test_an_empty_table_replaces_the_old_one(tmp_path: Path) -> None:
    path = str(tmp_path / "grants")
    lease_file.write(path, {"echo": 3})
    lease_file.write(path, {})
    assert lease_file.read(path) == {}


def test_no_file_yet_means_nothing_was_granted(tmp_path: Path) -> None:
    assert lease_file.read(str(tmp_path / "grants")) == {}


def test_without_a_path_nothing_is_known_and_nothing_written(tmp_path: Path) -> None:
    assert lease_file.read(None) is None
    lease_file.write(None, {"echo": 3})
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_file_is_unknown_not_partly_trusted(tmp_path: Path) -> None:
    path = tmp_path / "grants"
    path.write_text("echo 3\nsession:alice\n", encoding="utf-8")
    assert lease_file.read(str(path)) is None


def test_an_unreadable_file_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "grants"
    path.mkdir()  # reading a directory fails with an OSError
    assert lease_file.read(str(path)) is None
