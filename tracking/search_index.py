"""The full-text index of tracked emails on SQLite (FTS5): its table, the triggers that keep it in step,
and their repair after Django rebuilds the table. The searching itself is tracking.search; PostgreSQL's
index is a generated tsvector column (migration 0019). Only django.db here: tracking/apps.py calls it
after every migrate."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "tracking_trackedemail"
FTS_TABLE = "tracking_trackedemail_search"

# The FTS5 table's columns are the table's own, indexed as they are: an external-content table reads
# them back from tracking_trackedemail for snippets and for a rebuild. (Not a view of derived columns:
# Django rebuilds a SQLite table by dropping it and renaming a copy, and SQLite refuses the rename while a
# view names the dropped table.)
INDEXED = ("subject", "sender", "sender_name", "recipients", "body_text")
WEIGHTS = "10.0, 4.0, 4.0, 4.0, 1.0"  # bm25 per column of INDEXED
BODY_COLUMN = INDEXED.index("body_text")
_TRIGGERS = [f"{FTS_TABLE}_insert", f"{FTS_TABLE}_delete", f"{FTS_TABLE}_update"]


def sqlite_index_sql() -> list[str]:
    """The FTS5 table and the triggers that keep it in step with the table."""
    columns = ", ".join(INDEXED)
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in INDEXED)
    old = ", ".join(f"OLD.{c}" for c in INDEXED)
    new = ", ".join(f"NEW.{c}" for c in INDEXED)
    delete = f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, {columns}) VALUES ('delete', OLD.id, {old});"
    insert = f"INSERT INTO {FTS_TABLE} (rowid, {columns}) VALUES (NEW.id, {new});"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({columns}, "
        f"content='{TABLE}', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[0]} AFTER INSERT ON {TABLE} BEGIN {insert} END",
        f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[1]} AFTER DELETE ON {TABLE} BEGIN {delete} END",
        f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[2]} AFTER UPDATE ON {TABLE} WHEN {changed} "
        f"BEGIN {delete} {insert} END",
    ]


def install_sqlite_index(db: BaseDatabaseWrapper) -> None:
    """Create the SQLite index (what is missing of it) and index every row of the table."""
    with db.cursor() as cursor:
        for statement in sqlite_index_sql():
            cursor.execute(statement)
        cursor.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')")


def repair_sqlite_index(db: BaseDatabaseWrapper) -> bool:
    """Put the index's triggers back when they are gone, and index every row again; True if it did.

    Django rebuilds a SQLite table for some schema changes (a copy, a drop, a rename) and the triggers
    go with the dropped table; run after every migrate (tracking/apps.py), this notices and repairs it.
    """
    if db.vendor != "sqlite":
        return False
    marks = ", ".join(["%s"] * len(_TRIGGERS))
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = %s", [FTS_TABLE])
        if not cursor.fetchone()[0]:
            return False  # not migrated this far
        cursor.execute(
            f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", _TRIGGERS
        )
        if cursor.fetchone()[0] == len(_TRIGGERS):
            return False
    install_sqlite_index(db)
    return True
