"""The store's schema, as numbered migrations in the style of sqlite-utils.

Each migration is a named function ``mNNN_what(conn)`` registered with ``@migration`` in
order. :func:`apply_migrations` runs those not yet applied, each in one transaction
together with its row in ``_migrations``, and sets ``PRAGMA user_version`` to the schema
version (the number of migrations applied). A migration that has been applied anywhere is
never edited: change the schema with a new one appended at the end.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

__all__ = ["MIGRATIONS", "SchemaTooNew", "apply_migrations", "migration", "schema_version"]

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []
"""Every migration, in the order it is applied (version = position + 1)."""


class SchemaTooNew(Exception):
    """The database was migrated by a newer version of this code; it is left untouched."""


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration. Raises ValueError for a repeated name."""
    if any(m.__name__ == fn.__name__ for m in MIGRATIONS):
        raise ValueError(f"migration {fn.__name__} is registered twice")
    MIGRATIONS.append(fn)
    return fn


def _run(conn: sqlite3.Connection, *statements: str) -> None:
    # One statement per execute: executescript would COMMIT the migration's transaction.
    for statement in statements:
        conn.execute(statement)


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to ``conn``'s database (0 for a new one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def apply_migrations(conn: sqlite3.Connection) -> int:
    """Apply the pending migrations; returns the schema version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each migration and its
    record commit together, so a crash leaves the schema at a whole version. Raises
    :class:`SchemaTooNew` if the database records migrations this code does not know.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        " name TEXT PRIMARY KEY, version INTEGER NOT NULL UNIQUE, applied_at REAL NOT NULL)"
    )
    applied = {name for (name,) in conn.execute("SELECT name FROM _migrations")}
    unknown = applied - {m.__name__ for m in MIGRATIONS}
    if unknown:
        raise SchemaTooNew(f"database has migrations this code does not know: {sorted(unknown)}")
    for version, fn in enumerate(MIGRATIONS, start=1):
        if fn.__name__ in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute(
                "INSERT INTO _migrations (name, version, applied_at) VALUES (?, ?, ?)",
                (fn.__name__, version, time.time()),
            )
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """Channels and their audit, progress, subscriptions, posts, the sequence, cursors."""
    _run(
        conn,
        "CREATE TABLE channels ("
        " id INTEGER PRIMARY KEY,"
        " username TEXT NOT NULL DEFAULT '',"
        " title TEXT NOT NULL DEFAULT '',"
        " invite_link TEXT NOT NULL DEFAULT '',"
        " reader TEXT NOT NULL DEFAULT '',"
        " state TEXT NOT NULL DEFAULT 'active',"
        " added_by TEXT NOT NULL DEFAULT '',"
        " added_at INTEGER NOT NULL DEFAULT 0,"
        " error TEXT NOT NULL DEFAULT '')",
        "CREATE INDEX channels_username ON channels (lower(username)) WHERE username != ''",
        "CREATE INDEX channels_reader ON channels (reader, state)",
        "CREATE TABLE channel_audit ("
        " id INTEGER PRIMARY KEY,"
        " channel_id INTEGER NOT NULL REFERENCES channels (id),"
        " action TEXT NOT NULL CHECK (action IN ('add', 'remove')),"
        " by TEXT NOT NULL DEFAULT '',"
        " at REAL NOT NULL)",
        "CREATE INDEX channel_audit_channel ON channel_audit (channel_id)",
        "CREATE TABLE progress ("
        " channel_id INTEGER PRIMARY KEY REFERENCES channels (id),"
        " posts INTEGER NOT NULL DEFAULT 0,"
        " last_message_id INTEGER NOT NULL DEFAULT 0,"
        " last_post_at INTEGER NOT NULL DEFAULT 0,"
        " last_check_at INTEGER NOT NULL DEFAULT 0,"
        " newest_id INTEGER NOT NULL DEFAULT 0,"
        " lag_s REAL NOT NULL DEFAULT 0)",
        "CREATE TABLE subscriptions ("
        " subscriber TEXT NOT NULL,"
        " channel_id INTEGER NOT NULL REFERENCES channels (id),"
        " keywords TEXT NOT NULL DEFAULT '[]',"
        " created_at INTEGER NOT NULL,"
        " PRIMARY KEY (subscriber, channel_id))",
        "CREATE INDEX subscriptions_channel ON subscriptions (channel_id)",
        # Posts are never removed (deletion is a flag), so ids and seqs are never reused.
        "CREATE TABLE posts ("
        " id INTEGER PRIMARY KEY,"
        " channel_id INTEGER NOT NULL REFERENCES channels (id),"
        " message_id INTEGER NOT NULL,"
        " seq INTEGER NOT NULL UNIQUE,"
        " date INTEGER NOT NULL,"
        " text TEXT NOT NULL DEFAULT '',"
        " edit_date INTEGER NOT NULL DEFAULT 0,"
        " media TEXT NOT NULL DEFAULT '',"
        " views INTEGER NOT NULL DEFAULT 0,"
        " forwards INTEGER NOT NULL DEFAULT 0,"
        " deleted INTEGER NOT NULL DEFAULT 0,"
        " UNIQUE (channel_id, message_id))",
        # The store-wide sequence, one row: a counter, so a value is never handed out twice.
        "CREATE TABLE sequence (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
        "INSERT INTO sequence (id, value) VALUES (1, 0)",
        "CREATE TABLE cursors ("
        " name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at REAL NOT NULL)",
    )


@migration
def m002_posts_fts(conn: sqlite3.Connection) -> None:
    """Full-text index over post text (FTS5, external content), kept in sync by triggers."""
    _run(
        conn,
        "CREATE VIRTUAL TABLE posts_fts USING fts5("
        " text, content='posts', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts BEGIN"
        " INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts BEGIN"
        " INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
        "CREATE TRIGGER posts_fts_update AFTER UPDATE OF text ON posts BEGIN"
        " INSERT INTO posts_fts (posts_fts, rowid, text) VALUES ('delete', old.id, old.text);"
        " INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text); END",
    )


@migration
def m003_deliveries(conn: sqlite3.Connection) -> None:
    """What the bots delivered to whom (one row per subscriber and post)."""
    _run(
        conn,
        "CREATE TABLE deliveries ("
        " subscriber TEXT NOT NULL,"
        " channel_id INTEGER NOT NULL,"
        " message_id INTEGER NOT NULL,"
        " seq INTEGER NOT NULL DEFAULT 0,"
        " status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),"
        " sent_message_id INTEGER NOT NULL DEFAULT 0,"
        " error TEXT NOT NULL DEFAULT '',"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " updated_at INTEGER NOT NULL,"
        " PRIMARY KEY (subscriber, channel_id, message_id),"
        " FOREIGN KEY (channel_id, message_id) REFERENCES posts (channel_id, message_id))",
        "CREATE INDEX deliveries_seq ON deliveries (seq, subscriber)",
        "CREATE INDEX deliveries_status ON deliveries (status) WHERE status = 'pending'",
    )


@migration
def m004_posts_fts_explicit(conn: sqlite3.Connection) -> None:
    """The full-text index is written by the Store at commit, not by triggers: FTS5
    flushes at every statement that fires a trigger, several times the cost of a write."""
    _run(
        conn,
        "DROP TRIGGER posts_fts_insert",
        "DROP TRIGGER posts_fts_delete",
        "DROP TRIGGER posts_fts_update",
    )


@migration
def m005_deliveries_deleted(conn: sqlite3.Connection) -> None:
    """A delivery may be ``deleted`` (the bot deleted its copy): the status check is part
    of the table, so the table is rebuilt with the new one, rows and indexes kept."""
    _run(
        conn,
        "CREATE TABLE deliveries_new ("
        " subscriber TEXT NOT NULL,"
        " channel_id INTEGER NOT NULL,"
        " message_id INTEGER NOT NULL,"
        " seq INTEGER NOT NULL DEFAULT 0,"
        " status TEXT NOT NULL"
        " CHECK (status IN ('pending', 'sent', 'failed', 'skipped', 'deleted')),"
        " sent_message_id INTEGER NOT NULL DEFAULT 0,"
        " error TEXT NOT NULL DEFAULT '',"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " updated_at INTEGER NOT NULL,"
        " PRIMARY KEY (subscriber, channel_id, message_id),"
        " FOREIGN KEY (channel_id, message_id) REFERENCES posts (channel_id, message_id))",
        "INSERT INTO deliveries_new SELECT * FROM deliveries",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_new RENAME TO deliveries",
        "CREATE INDEX deliveries_seq ON deliveries (seq, subscriber)",
        "CREATE INDEX deliveries_status ON deliveries (status) WHERE status = 'pending'",
    )
