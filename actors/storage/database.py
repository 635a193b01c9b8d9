"""The store's SQLite file: opening it, its transactions and its full-text index queue.

:class:`Database` is the base the query groups (:mod:`.channels`, :mod:`.posts`,
:mod:`.delivery`) build on. SQLite runs in WAL mode with ``foreign_keys=ON``; every write
method is one transaction (``BEGIN IMMEDIATE``), or a savepoint inside the caller's
transaction (:meth:`~Database.begin` / :meth:`~Database.commit` group several requests
into one commit). With ``synchronous=NORMAL`` a committed transaction survives the process
being killed (it is in the WAL, which the OS holds); only a power loss or OS crash may lose
the last commits. ``FULL`` syncs the WAL on every commit and survives those too, at a cost
per commit.

Post text is indexed for full-text search (FTS5, external content over ``posts``) here:
entries are queued by each write (:meth:`~Database._index`) and written just before the
commit (FTS5 flushes at every savepoint and trigger, which cost several times a write), so
search sees committed posts; a rolled-back write or savepoint drops its entries.

The connection belongs to the thread that built the Database (the actor's thread).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from actors.storage.migrations import apply_migrations
from protocols import store as p

__all__ = ["Database", "Synchronous", "encoded_size", "page", "where_clause"]

T = TypeVar("T")
_encoder = msgspec.msgpack.Encoder()

Synchronous = Literal["normal", "full"]


class Database:
    """The application database in one SQLite file (or ``":memory:"``).

    Opening creates the file (and its directory) if needed, sets WAL mode and applies the
    pending migrations. Raises ``sqlite3.Error`` if the file cannot be opened and
    :class:`~actors.storage.migrations.SchemaTooNew` if a newer version migrated it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._clock = clock
        self._savepoints = 0
        # (post rowid, text, text it replaces): index entries due at the next commit.
        self._unindexed: list[tuple[int, str, str | None]] = []
        self.commits = 0  # transactions committed since opening
        # Autocommit mode: transactions are begun and ended here, explicitly.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            (mode,) = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode not in ("wal", "memory"):  # another connection holds it in rollback mode
                raise sqlite3.OperationalError(f"{self.path} could not switch to WAL ({mode})")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self.schema_version = apply_migrations(self._conn)
        except BaseException:
            self._conn.close()
            raise

    # -- transactions ---------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def begin(self) -> None:
        """Open a transaction that the following writes join, until :meth:`commit`."""
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the open transaction: when this returns, its writes are durable."""
        self._write_index()
        self._conn.execute("COMMIT")
        self.commits += 1

    def rollback(self) -> None:
        self._unindexed.clear()
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All of the block or none of it: a transaction, or a savepoint inside one."""
        if not self._conn.in_transaction:
            self.begin()
            try:
                yield
                self.commit()
            except BaseException:
                self.rollback()
                raise
            return
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        queued = len(self._unindexed)
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            del self._unindexed[queued:]
            raise
        finally:
            self._conn.execute(f"RELEASE {name}")
            self._savepoints -= 1

    def close(self) -> None:
        """Roll back anything uncommitted and close the file."""
        self.rollback()
        self._conn.close()

    def integrity_check(self) -> str:
        """``"ok"``, or what SQLite's ``PRAGMA integrity_check`` found wrong, or that the
        full-text index does not match the posts."""
        found = "\n".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))
        try:
            self._conn.execute(
                "INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)"
            )
        except sqlite3.DatabaseError as exc:
            return (
                f"full-text index: {exc}" if found == "ok" else f"{found}\nfull-text index: {exc}"
            )
        return found

    # -- the full-text index ------------------------------------------------------------

    def _index(self, rowid: int | None, text: str, old_text: str | None = None) -> None:
        """Queue a post's text for the full-text index, which is written at commit."""
        assert rowid is not None  # the row was just inserted or read
        self._unindexed.append((rowid, text, old_text))

    def _write_index(self) -> None:
        # FTS5 flushes its pending terms at every savepoint and trigger, which made a
        # write several times slower; queued and written together, a commit flushes once.
        for rowid, text, old_text in self._unindexed:
            if old_text is not None:
                self._conn.execute(
                    "INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', ?, ?)",
                    (rowid, old_text),
                )
            self._conn.execute("INSERT INTO posts_fts (rowid, text) VALUES (?, ?)", (rowid, text))
        self._unindexed.clear()

    # -- helpers ------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _one(self, sql: str, args: Iterable[Any] = ()) -> int:
        return int(self._conn.execute(sql, tuple(args)).fetchone()[0])

    def _last_seq(self) -> int:
        return self._one("SELECT value FROM sequence WHERE id = 1")

    def _set_last_seq(self, seq: int) -> None:
        self._conn.execute("UPDATE sequence SET value = ? WHERE id = 1", (seq,))


def where_clause(equal: dict[str, Any], also: Iterable[str] = ()) -> tuple[str, list[Any]]:
    """A WHERE condition: ``column = ?`` for each column whose value is set (truthy),
    and the conditions ``also``; ``1`` when there are none. Returns it and its arguments."""
    conditions = [f"{column} = ?" for column, value in equal.items() if value]
    return " AND ".join([*conditions, *also]) or "1", [v for v in equal.values() if v]


def encoded_size(row: msgspec.Struct) -> int:
    """The bytes ``row`` takes in a frame (msgpack)."""
    return len(_encoder.encode(row))


def page(rows: Iterable[T], limit: int, size: Callable[[T], int]) -> tuple[list[T], bool]:
    """The first ``limit`` of ``rows`` (fetched with one more, to tell what follows), fewer
    once the sum of their ``size`` passes ``PAGE_BYTES``, never none while rows remain.
    Returns them and whether rows follow them."""
    taken: list[T] = []
    total = 0
    for row in rows:
        total += size(row)
        if len(taken) == limit or (taken and total > p.PAGE_BYTES):
            return taken, True
        taken.append(row)
    return taken, False
