"""The store's SQLite write path: plain statements through the ``sqlite3`` driver.

A REST write on SQLite runs a dozen statements (find the row, copy it to history, clear
its index rows from eight tables, write the new version, insert the new index rows, the
AuditEvent). Through SQLAlchemy each execution cost 30-60 µs of Python before SQLite did
any work; through the driver's cursor (whose statement cache keeps them prepared) it costs
a few. Everything here runs in the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table

from sharedcare.db.engine import driver_connection
from sharedcare.record.store_rows import INDEX_TABLES

if TYPE_CHECKING:
    from sharedcare.record.sqlstore import PendingWrite

__all__ = ["READ_ONE", "existing", "insert_rows", "write_resources"]

CHUNK = 500  # keys per IN-list, within SQLite's parameter limit

READ_ONE = (
    "SELECT resource_type, id, version_id, last_updated, deleted, content FROM resource "
    "WHERE resource_type = ? AND id = ?"
)
_EXISTING_ONE = (
    "SELECT resource_type, id, pk, version_id, deleted FROM resource "
    "WHERE resource_type = ? AND id = ?"
)
_UPDATE = (
    "UPDATE resource SET version_id = ?, last_updated = ?, deleted = ?, content = ? WHERE pk = ?"
)
_CREATE = (
    "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING pk"
)


def _text(content: bytes | None) -> str | None:
    # The column is text on SQLite (see ``JsonDocument``).
    return None if content is None else content.decode()


def existing(
    connection: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, bool]]:
    """(pk, version_id, deleted) for those of ``keys`` that exist, grouped by type into
    ``type = ? AND id IN (…)`` lookups (an index search; a row-value ``IN`` scans)."""
    cursor = driver_connection(connection).cursor()
    found: dict[tuple[str, str], tuple[int, int, bool]] = {}
    try:
        if len(keys) == 1:
            rows: Iterable[Any] = cursor.execute(_EXISTING_ONE, keys[0]).fetchall()
            for t, i, pk, version, deleted in rows:
                found[(t, i)] = (pk, version, bool(deleted))
            return found
        by_type: dict[str, list[str]] = {}
        for resource_type, resource_id in keys:
            by_type.setdefault(resource_type, []).append(resource_id)
        for resource_type, ids in by_type.items():
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = cursor.execute(
                    "SELECT resource_type, id, pk, version_id, deleted FROM resource "
                    f"WHERE resource_type = ? AND id IN ({marks})",
                    [resource_type, *chunk],
                ).fetchall()
                for t, i, pk, version, deleted in rows:
                    found[(t, i)] = (pk, version, bool(deleted))
    finally:
        cursor.close()
    return found


def write_resources(
    connection: Connection,
    updates: Sequence[PendingWrite],
    creates: Sequence[PendingWrite],
    pks: dict[tuple[str, str], int],
) -> None:
    """Resource rows: updates copy the current version to history, clear its index rows
    and overwrite it; creates insert, adding their new keys to ``pks``."""
    cursor = driver_connection(connection).cursor()
    try:
        if updates:
            old = [pks[(w.resource_type, w.id)] for w in updates]
            for start in range(0, len(old), CHUNK):
                chunk = old[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                cursor.execute(
                    "INSERT INTO resource_history "
                    "(resource_type, id, version_id, last_updated, deleted, content) "
                    "SELECT resource_type, id, version_id, last_updated, deleted, content "
                    f"FROM resource WHERE pk IN ({marks})",
                    chunk,
                )
                for table in INDEX_TABLES.values():
                    cursor.execute(f"DELETE FROM {table.name} WHERE res IN ({marks})", chunk)
            cursor.executemany(
                _UPDATE,
                [
                    (
                        w.version_id,
                        w.last_updated,
                        w.deleted,
                        _text(w.content),
                        pks[(w.resource_type, w.id)],
                    )
                    for w in updates
                ],
            )
        for w in creates:
            cursor.execute(
                _CREATE,
                (
                    w.resource_type,
                    w.id,
                    w.version_id,
                    w.last_updated,
                    w.deleted,
                    _text(w.content),
                ),
            )
            pks[(w.resource_type, w.id)] = cursor.fetchone()[0]
    finally:
        cursor.close()


def insert_rows(connection: Connection, table: Table, rows: Iterable[tuple[Any, ...]]) -> None:
    """``executemany`` plain tuples into ``table``: binding thousands of rows through
    SQLAlchemy's compiler costs more than SQLite's own work."""
    names = [c.name for c in table.columns]
    marks = ", ".join("?" * len(names))
    cursor = driver_connection(connection).cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", list(rows)
        )
    finally:
        cursor.close()
