"""Writing a unit of identity work: links, golden Patients, reviews, trail and AuditEvents.

:class:`WorkWriter` is the part of :class:`~sharedcare.identity.work.Work` that turns the
changes held in memory into rows when the transaction ends (:meth:`WorkWriter.flush`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from sharedcare.db.engine import driver_connection, driver_errors
from sharedcare.identity import store as rows
from sharedcare.identity.changes import PendingChanges
from sharedcare.identity.golden import empty_patient, golden_patient, retired_patient
from sharedcare.identity.matcher import DecisionKind, Matcher, MatchError
from sharedcare.identity.model import Band
from sharedcare.record import sqlstore_pg
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.context import RequestContext
from sharedcare.record.repository import Repository, same_content
from sharedcare.record.sqlstore import PendingWrite, SqlStore, StoredResource

if TYPE_CHECKING:
    from sharedcare.identity.service import IdentityService

# PostgreSQL: the rows of a batch (the ingest writer's: hundreds of links and golden records
# a transaction) in one statement of fixed text, arrays of columns, rather than one
# statement per row (decision 0025). One row keeps the cached one-row upsert.
_PG_TYPES = {
    "source_id": "text",
    "source_system": "text",
    "source_version": "integer",
    "golden_id": "text",
    "kind": "text",
    "band": "text",
    "match_weight": "float8",
    "probability": "float8",
    "matched_source_id": "text",
    "candidates": "integer",
    "evidence": "bytea",
    "decided_by": "text",
    "decided_at": "bigint",
    "changed": "bigint",
    "status": "text",
    "replaced_by": "text",
    "created_at": "bigint",
    "updated_at": "bigint",
}
_PG_REFRESH = (
    "UPDATE identity_link SET source_version = u.v, changed = %(changed)s "
    "FROM ROWS FROM (json_array_elements_text(%(ids)s::json), unnest(%(versions)s::integer[])) "
    "AS u(id, v) WHERE identity_link.source_id = u.id"
)
_PG_UPSERTS: dict[tuple[str, tuple[str, ...]], str] = {}
# Text and integer columns go as text built in C (``sqlstore_pg.text_array``, ``int_array``):
# psycopg dumps a list parameter element by element in Python. Floats and bytes keep lists.
_PG_INTEGERS = frozenset({"integer", "bigint"})


def _pg_column(column: str) -> str:
    kind = _PG_TYPES[column]
    if kind == "text":
        return f"json_array_elements_text(%({column})s::json)"
    return f"unnest(%({column})s::{kind}[])"


def _pg_values(column: str, values: list[Any]) -> Any:
    kind = _PG_TYPES[column]
    if kind == "text":
        return sqlstore_pg.text_array(values)
    return sqlstore_pg.int_array(values) if kind in _PG_INTEGERS else values


def _pg_upsert(table: str, key: str, columns: tuple[str, ...]) -> str:
    statement = _PG_UPSERTS.get((table, columns))
    if statement is None:
        arrays = ", ".join(_pg_column(c) for c in columns)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
        statement = _PG_UPSERTS[(table, columns)] = (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM ROWS FROM ({arrays}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
    return statement


_PG_UPSERTS_ONE: dict[tuple[str, tuple[str, ...]], str] = {}
_PG_REFRESH_ONE = "UPDATE identity_link SET source_version = %s, changed = %s WHERE source_id = %s"


def _pg_upsert_one(table: str, key: str, columns: tuple[str, ...]) -> str:
    statement = _PG_UPSERTS_ONE.get((table, columns))
    if statement is None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
        statement = _PG_UPSERTS_ONE[(table, columns)] = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
    return statement


def _upsert(c: Connection, table: Any, batch: list[dict[str, Any]], key: str) -> None:
    """:func:`rows.upsert`; on PostgreSQL, through the driver: one row (a real-time match's
    link or golden row) with plain parameters, several (unique ``key``) in one statement."""
    columns = tuple(batch[0]) if batch else ()
    if not batch or c.dialect.name != "postgresql" or not _PG_TYPES.keys() >= set(columns):
        rows.upsert(c, table, batch, key)
        return
    if len(batch) == 1:
        # Building and running SQLAlchemy's statement cost more Python than the statement.
        with driver_errors():
            driver_connection(c).execute(
                _pg_upsert_one(table.name, key, columns), tuple(batch[0].values())
            )
        return
    c.exec_driver_sql(
        _pg_upsert(table.name, key, columns),
        {col: _pg_values(col, [r[col] for r in batch]) for col in columns},
    )


class WorkWriter:
    """The state of a unit of identity work, and how it is written (base of ``Work``)."""

    service: IdentityService
    connection: Connection
    store: SqlStore
    context: RequestContext
    version: int
    now: int
    _pending: PendingChanges

    @property
    def _m(self) -> Matcher:
        return self.service.matcher

    def _has_changes(self) -> bool:
        p = self._pending
        return bool(
            p.links or p.versions or p.moved or p.removed or p.affected or p.goldens or p.reviews
        )

    def _note_golden(self, golden_id: str) -> None:
        svc = self.service
        if golden_id not in svc._goldens:
            # Creation times are unique and increasing, so "the older golden record" (kept
            # by a review's merge) is well defined even within one transaction.
            svc._last_created = max(self.now, svc._last_created + 1)
            svc._goldens[golden_id] = ("active", None, svc._last_created)
            self._pending.goldens.add(golden_id)
            self._pending.minted.add(golden_id)

    def _retire(self, golden_id: str, replaced_by: str) -> None:
        svc = self.service
        created = svc._goldens.get(golden_id, ("", None, self.now))[2]
        svc._goldens[golden_id] = ("retired", replaced_by, created)
        svc._replaces.setdefault(replaced_by, set()).add(golden_id)
        self._pending.goldens.add(golden_id)

    def _golden_content(self, golden_id: str) -> tuple[str, str | None, dict[str, Any]]:
        m = self._m
        try:
            replaced_by = m.replaced_by(golden_id)
            members = m.members(golden_id)
        except MatchError:  # not in memory: a golden record whose sources are all gone
            held = self.service._goldens.get(golden_id)
            if held is not None and held[0] == "retired" and held[1]:
                return "retired", held[1], retired_patient(golden_id, held[1])
            return "empty", None, empty_patient(golden_id)
        if replaced_by is not None:
            return "retired", replaced_by, retired_patient(golden_id, replaced_by)
        if not members:
            return "empty", None, empty_patient(golden_id)
        sources = [key[1] for key in members]
        replaces = self.service._replaces.get(golden_id, set())
        return "active", None, golden_patient(m.golden(golden_id), sources, replaces)

    def flush(self, *, commit: bool = False, last_trail: bool = False) -> tuple[int | None, bool]:
        """Write everything this work changed (called by the transaction).

        Args:
            commit: On PostgreSQL, send every statement left and the transaction's
                ``COMMIT`` in one pipeline (:meth:`_flush_committing`) when at most one
                golden Patient is written (a real-time match): the caller must write
                nothing after this.
            last_trail: Also read the newest identity trail id when this work writes no
                trail row (the caller caught up with another process's changes).

        Returns:
            The newest identity trail id (written, or read with ``last_trail``), if known;
            and whether the transaction has committed.
        """
        p, c = self._pending, self.connection
        goldens = self._prepare_goldens()
        if commit and len(goldens) <= 1 and c.dialect.name == "postgresql":
            return self._flush_committing(goldens, last_trail), True
        # One golden record (a real-time match) is sent in PostgreSQL's pipeline mode with
        # the rest of the work, as the repository sends a REST write (decision 0021): one
        # wait at the end, not one per statement. Inserts that return rows (the trail's
        # ids; the review's key, which SQLAlchemy fetches for a single row) come after:
        # pipeline mode does not give them their results.
        if c.dialect.name == "postgresql" and len(goldens) > 1:
            # A batch (the ingest writer's): the golden Patients first, as their writes wait
            # for reads; then every statement left that returns nothing in one pipeline
            # (nothing in it may read a result through SQLAlchemy: it would come back empty).
            self.store.apply(c, goldens)
            with sqlstore_pg.pipeline(c):
                self._write_rows([])
                write_audit(c, self.context, p.audits)
        else:
            with self.store.pipelined(c, goldens):
                self._write_rows(goldens)
                write_audit(c, self.context, p.audits)
        rows.insert_reviews(c, p.reviews)
        written = rows.insert_trail(c, self.context.user, p.trail, self.now)
        if written is None and last_trail:
            written = rows.last_trail_id(c)
        return written, False

    def _flush_committing(self, goldens: list[PendingWrite], last_trail: bool) -> int | None:
        """:meth:`flush` on PostgreSQL, the ``COMMIT`` included, with one wait at the end.

        The statements and rows are :meth:`flush`'s, run with generic plans (each inserts
        or upserts rows by key); the review and trail rows go in
        through the driver without returning their keys, and the newest trail id is read
        by ``max(id)`` before the commit: identity writers queue on the index version's
        row lock and only they write the trail, so in this transaction that is the id
        :func:`rows.insert_trail` would have returned.
        """
        p, c = self._pending, self.connection
        raw = driver_connection(c)
        with self.store.pipelined(c, goldens) if goldens else sqlstore_pg.pipeline(c):
            # Inserts and upserts by key from here on: one plan serves every value, as in
            # the record's own single writes (``sqlstore_pg.own_transaction``).
            if goldens:
                raw.execute(sqlstore_pg.GENERIC_PLANS)
            self._write_rows(goldens)
            write_audit(c, self.context, p.audits)
            with raw.cursor() as cursor:
                if p.reviews:
                    cursor.executemany(rows.PG_INSERT_REVIEW, rows.pg_review_params(p.reviews))
                if p.trail:
                    cursor.executemany(
                        rows.PG_INSERT_TRAIL,
                        rows.pg_trail_params(self.context.user, p.trail, self.now),
                    )
            newest = raw.cursor() if p.trail or last_trail else None
            if newest is not None:
                newest.execute(rows.PG_LAST_TRAIL)
            raw.commit()
        if newest is None:
            return None
        with newest:
            row = newest.fetchone()
        return int(row[0]) if row else None

    def _write_rows(self, goldens: list[PendingWrite]) -> None:
        """Links, golden records and their ``identity_golden`` rows."""
        svc, p, c = self.service, self._pending, self.connection
        _upsert(c, rows.LINK, list(p.links.values()), "source_id")
        refreshed = {s: v for s, v in p.versions.items() if s not in p.links and s not in p.removed}
        if len(refreshed) > 1 and c.dialect.name == "postgresql":
            c.exec_driver_sql(
                _PG_REFRESH,
                {
                    "changed": self.version,
                    "ids": sqlstore_pg.text_array(list(refreshed)),
                    "versions": sqlstore_pg.int_array(list(refreshed.values())),
                },
            )
        elif len(refreshed) == 1 and c.dialect.name == "postgresql":
            ((source_id, version),) = refreshed.items()
            with driver_errors():
                driver_connection(c).execute(_PG_REFRESH_ONE, (version, self.version, source_id))
        else:
            rows.refresh_links(c, refreshed, self.version)
        if p.removed:
            removed = sorted(p.removed)
            for start in range(0, len(removed), 500):
                c.execute(
                    rows.LINK.delete().where(
                        rows.LINK.c.source_id.in_(removed[start : start + 500])
                    )
                )
        for source_id in sorted(p.moved - p.removed):
            key = svc._keys.get(source_id)
            if key is None:
                continue
            c.execute(
                update(rows.LINK)
                .where(rows.LINK.c.source_id == source_id)
                .values(
                    golden_id=self._m.golden_id_of(key),
                    kind=DecisionKind.MANUAL.value,
                    band=Band.AUTO_LINK.value,
                    match_weight=None,
                    probability=None,
                    matched_source_id=None,
                    candidates=0,
                    evidence=None,
                    decided_by=self.context.user[:200],
                    decided_at=self.now,
                    changed=self.version,
                )
            )
        self.store.apply(c, goldens)
        _upsert(
            c,
            rows.GOLDEN,
            [
                {
                    "golden_id": g,
                    "status": svc._goldens[g][0],
                    "replaced_by": svc._goldens[g][1],
                    "created_at": svc._goldens[g][2],
                    "updated_at": self.now,
                    "changed": self.version,
                }
                for g in sorted(p.goldens)
                if g in svc._goldens
            ],
            "golden_id",
        )

    def _read_goldens(self, golden_ids: list[str]) -> dict[tuple[str, str], StoredResource]:
        """The stored golden Patients, to compare with what survivorship makes of them now.

        A real-time match mostly touches one golden record: it is read with the store's
        fixed one-row statement, which costs far less Python than building the ``IN`` of
        :meth:`SqlStore.read_many` (py-spy, SQLite); several are read in one statement.
        """
        c = self.connection
        if not golden_ids:
            return {}
        if len(golden_ids) != 1:
            return self.store.read_many(c, [("Patient", g) for g in golden_ids])
        stored = self.store.read(c, "Patient", golden_ids[0])
        return {} if stored is None else {("Patient", golden_ids[0]): stored}

    def _prepare_goldens(self) -> list[PendingWrite]:
        """The golden Patients whose content changed, prepared; their AuditEvents noted.

        Also brings each affected golden record's status in ``_goldens`` up to date (its
        ``identity_golden`` row is written when that changed).
        """
        svc, p = self.service, self._pending
        if not p.affected:
            return []
        repo = Repository(self.store, self.context)
        affected = sorted(p.affected)
        # A golden id first handed out in this transaction has no Patient to read: every
        # golden record identity writes has its ``identity_golden`` row (loaded into
        # ``_goldens``) in the same transaction, and new ids are server-assigned UUIDs
        # (``new_id``, as the record's creates). Were one taken all the same, its insert as
        # version 1 would fail on the unique key and roll the transaction back (nothing is
        # overwritten).
        current = self._read_goldens([g for g in affected if g not in p.minted])
        writes = []
        for golden_id in affected:
            status, replaced_by, content = self._golden_content(golden_id)
            held = svc._goldens.get(golden_id, ("", None, self.now))
            state = (status, replaced_by, held[2])
            if held != state:
                svc._goldens[golden_id] = state
                p.goldens.add(golden_id)
            stored = current.get(("Patient", golden_id))
            if stored is not None and not stored.deleted and same_content(stored.json(), content):
                continue
            version = stored.version_id + 1 if stored is not None else 1
            writes.append(
                repo.prepare(
                    content,
                    id=golden_id,
                    version_id=version,
                    now=self.now,
                    existed=stored is not None,
                )
            )
            p.audits.append(
                AuditEntry(
                    "update" if stored is not None else "create",
                    "0",
                    "Patient",
                    golden_id,
                    version,
                    patient=f"Patient/{golden_id}",
                    description="golden record",
                )
            )
        return writes
