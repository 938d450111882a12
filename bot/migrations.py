"""Schema changes for databases created by an earlier version, as small numbered functions.

``init_db`` creates missing tables with today's columns; a migration brings a table that existed
before up to date. Each runs once (the version is kept in ``schema_version``) and checks what is
there first, so a fresh database, whose tables already have every column, passes through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection, inspect, text

log = logging.getLogger(__name__)


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    present = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, ddl in columns.items():
        if name not in present:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
            log.info("added column %s.%s", table, name)


def _m1_handoff_widget(conn: Connection) -> None:
    """Widget and console: customer identity, agent names, offline tickets."""
    _add_columns(conn, "conversations", {"customer_id": "VARCHAR(200)"})
    _add_columns(conn, "messages", {"author": "VARCHAR(100)"})
    _add_columns(
        conn,
        "handoffs",
        {"offline": "BOOLEAN NOT NULL DEFAULT FALSE", "contact_email": "VARCHAR(320)"},
    )
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_conversations_customer_id ON conversations (customer_id)"
        )
    )


MIGRATIONS: list[Callable[[Connection], None]] = [_m1_handoff_widget]


def migrate(conn: Connection) -> int:
    """Run the migrations this database has not had; returns the schema version reached."""
    conn.execute(text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
    row = conn.execute(text("SELECT version FROM schema_version")).first()
    version = row[0] if row else 0
    if row is None:
        conn.execute(text("INSERT INTO schema_version (version) VALUES (0)"))
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        step(conn)
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": number})
        log.info("database schema migrated to version %d", number)
    return len(MIGRATIONS)
