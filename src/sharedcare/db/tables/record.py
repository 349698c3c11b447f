"""The FHIR record: current resources, their history, typed search indexes and the audit trail.

Design (see ``docs/decisions/0008-record-storage.md``): one ``resource`` table holds the
current version of every resource as JSON (``json`` on PostgreSQL, text on SQLite) with a
compact integer key; ``resource_history`` holds every earlier version. Search values,
extracted from the official R4 SearchParameter expressions, live in one narrow table per
parameter type, keyed by the resource's integer key and a small integer parameter id; long
values that are only ever compared for equality (token systems, composite combinations) are
stored as 64-bit keys (``docs/decisions/0011-record-footprint.md``). Timestamps are epoch
microseconds (UTC) so that date searches compare integers.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from sharedcare.db.tables.base import Base, personal_data

# SQLite stores the integer key as INTEGER PRIMARY KEY (the rowid); PostgreSQL as BIGINT.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


class JsonDocument(TypeDecorator[bytes]):
    """A JSON document passed as serialised bytes: ``jsonb`` on PostgreSQL, text on SQLite.

    The store serialises with orjson once and hands the bytes straight to the driver, so no
    JSON is parsed or re-encoded in Python on the write path. The audit trail keeps
    ``jsonb`` (its searches read into the documents); resources use :class:`JsonText`.
    """

    impl = LargeBinary
    cache_ok = True
    #: The PostgreSQL type, and psycopg's wrapper that sends bytes as that type.
    postgresql_type: Any = JSONB
    postgresql_wrapper = "Jsonb"

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(self.postgresql_type())
        return dialect.type_descriptor(Text())

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from psycopg.types import json as psycopg_json

            wrapper = getattr(psycopg_json, self.postgresql_wrapper)

            def to_json(value: bytes | None) -> Any:
                return None if value is None else wrapper(value, dumps=_identity)

            return to_json

        def to_text(value: bytes | None) -> str | None:
            return None if value is None else value.decode()

        return to_text

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return None


class JsonText(JsonDocument):
    """A resource's JSON as the text it was written: ``json`` on PostgreSQL, text on SQLite.

    ``json`` keeps the compact text orjson wrote, which is smaller than ``jsonb``'s binary
    form (about 655 against 781 bytes for the record benchmark's resources) and is read back
    without conversion. What reads into the documents in SQL casts to ``jsonb`` first: the
    ``:of-type`` check and the analytics views over the record store
    (``docs/decisions/0011-record-footprint.md``, addendum of session 11).
    """

    cache_ok = True
    postgresql_type = JSON
    postgresql_wrapper = "Json"


def _identity(value: Any) -> Any:
    return value


class Resource(Base):
    """The current version of each resource (deleted ones keep a row with no content)."""

    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("resource_type", "id").ddl_if(dialect="sqlite"),
        # PostgreSQL: the id first. Server ids are time-ordered, so new keys land at the
        # index's right edge and its pages fill, where under each type they split half full
        # (101 against 82 bytes per resource; decision 0011, addendum of session 11).
        UniqueConstraint("id", "resource_type").ddl_if(dialect="postgresql"),
        Index("ix_resource_type_updated", "resource_type", "last_updated"),
        # Only deleted rows (few): counting a whole type is then two index-only counts.
        Index(
            "ix_resource_deleted_type",
            "resource_type",
            postgresql_where=text("deleted"),
            sqlite_where=text("deleted = 1"),
        ),
    )

    pk: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[int] = mapped_column(BigInteger, doc="epoch microseconds, UTC")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[bytes | None] = personal_data(JsonText())


class meta_source(FunctionElement[str]):
    """``meta.source`` of a stored resource, as ``_source`` searches compare it
    (https://hl7.org/fhir/R4/search.html#_source), read from the JSON itself.

    Rendered with constants only (``((content -> 'meta') ->> 'source') COLLATE "C"`` on
    PostgreSQL, ``json_extract(content, '$.meta.source')`` on SQLite) so that a query's
    expression is the one ``ix_resource_source`` indexes and the database uses that index
    (``docs/decisions/0011-record-footprint.md``, addendum of 2026-11-22). Byte order on
    PostgreSQL lets ``:below`` (``LIKE 'prefix%'``) scan a range of the index under any
    database collation; equality is the same under every deterministic collation.
    """

    type = Text()
    name = "meta_source"
    inherit_cache = True


class meta_source_sorted(FunctionElement[str]):
    """``meta.source`` in the database's own collation, for ``_sort=_source`` (the order
    the ``idx_uri`` rows sorted in)."""

    type = Text()
    name = "meta_source_sorted"
    inherit_cache = True


def _source_pg(element: Any, compiler: Any, **kw: Any) -> str:
    # As PostgreSQL writes the index expression back, so that Alembic sees them equal.
    return f"(({compiler.process(element.clauses, **kw)} -> 'meta') ->> 'source')"


@compiles(meta_source, "postgresql")
def _meta_source_pg(element: meta_source, compiler: Any, **kw: Any) -> str:
    return f'({_source_pg(element, compiler, **kw)} COLLATE "C")'


@compiles(meta_source_sorted, "postgresql")
def _meta_source_sorted_pg(element: meta_source_sorted, compiler: Any, **kw: Any) -> str:
    return _source_pg(element, compiler, **kw)


@compiles(meta_source)
@compiles(meta_source_sorted)
def _meta_source_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.meta.source')"


# ``_source`` searches: one entry per resource, deduplicated on PostgreSQL (sources are few).
# Migration 0012 gives the expression the collation "C" on PostgreSQL, as ``meta_source``
# compares it. PostgreSQL keeps that as the index column's collation, which SQLAlchemy's
# reflection does not report, so the model declares the bare expression to compare equal.
Index(
    "ix_resource_source", Resource.resource_type, meta_source_sorted(Resource.__table__.c.content)
)


class ResourceHistory(Base):
    """Every earlier version of each resource."""

    __tablename__ = "resource_history"

    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[int] = mapped_column(BigInteger, index=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[bytes | None] = personal_data(JsonText())


class SearchParamId(Base):
    """Small integer ids for (resource type, search parameter code) pairs."""

    __tablename__ = "search_param"
    __table_args__ = (UniqueConstraint("resource_type", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(100))


_WITHOUT_ROWID = {"sqlite_with_rowid": False}


class IdxString(Base):
    """String parameters: normalised (lower-case, accent-folded) and exact values.

    In every index table the primary key leads with the parameter and value, so it is the
    search index itself; a second index on ``res`` serves rewrites. (On PostgreSQL,
    ``idx_token`` and ``idx_reference`` have value indexes instead; see below.) Absent parts
    are stored as empty strings so they can sit in the key.
    """

    __tablename__ = "idx_string"
    __table_args__ = (Index("ix_idx_string_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[str] = personal_data(Text(), primary_key=True)
    exact: Mapped[str] = personal_data(Text(), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IdxToken(Base):
    """Token parameters: code, system key and normalised display text (for ``:text``).

    The system URI is stored as its 64-bit key (``sharedcare.record.keys.system_key``): eight
    bytes instead of thirty or more, in every row and in both of its index entries.
    """

    __tablename__ = "idx_token"
    __table_args__ = (
        Index("ix_idx_token_res", "res"),
        # PostgreSQL: instead of the primary key (SQLite only, below), an index of the
        # values carrying ``res``, whose equal keys pack their pages full (decision 0011).
        Index(
            "ix_idx_token_value", "param", "code", "system_id", postgresql_include=["res"]
        ).ddl_if(dialect="postgresql"),
        _WITHOUT_ROWID,
    )

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    code: Mapped[str] = personal_data(Text(), primary_key=True)
    system_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    text: Mapped[str] = personal_data(Text(), primary_key=True)


class IdxReference(Base):
    """Reference parameters: target id and type, version, or an absolute URL."""

    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_idx_reference_res", "res"),
        # PostgreSQL: instead of the primary key (SQLite only, below), an index of the
        # values without ``res``, deduplicated into posting lists (decision 0011).
        Index("ix_idx_reference_value", "param", "target_id", "target_type", "url").ddl_if(
            dialect="postgresql"
        ),
        _WITHOUT_ROWID,
    )

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text(), primary_key=True)


# On PostgreSQL these two tables have no primary key: the ``ix_*_value`` indexes above serve
# searches at a fraction of the key's size (``docs/decisions/0011-record-footprint.md``,
# addendum of session 11; migration 0014). SQLite keeps the key: its tables are stored
# WITHOUT ROWID in key order, and the key still refuses a duplicate row there.
for _table in (IdxToken.__table__, IdxReference.__table__):
    cast(Table, _table).primary_key.ddl_if(dialect="sqlite")


class IdxDate(Base):
    """Date parameters as ranges [low, high) in epoch microseconds."""

    __tablename__ = "idx_date"
    __table_args__ = (Index("ix_idx_date_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    low: Mapped[int] = personal_data(BigInteger(), primary_key=True)
    high: Mapped[int] = personal_data(BigInteger(), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IdxNumber(Base):
    """Number parameters."""

    __tablename__ = "idx_number"
    __table_args__ = (Index("ix_idx_number_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[Any] = mapped_column(Numeric(asdecimal=True), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IdxQuantity(Base):
    """Quantity parameters: value with code, system key (as for tokens) and unit."""

    __tablename__ = "idx_quantity"
    __table_args__ = (Index("ix_idx_quantity_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[Any] = mapped_column(Numeric(asdecimal=True), primary_key=True)
    code: Mapped[str] = mapped_column(Text(), primary_key=True)
    system_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    unit: Mapped[str] = mapped_column(Text(), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IdxUri(Base):
    """URI parameters."""

    __tablename__ = "idx_uri"
    __table_args__ = (Index("ix_idx_uri_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    uri: Mapped[str] = mapped_column(Text(), primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class IdxComposite(Base):
    """Composite parameters: one row per combination of component values.

    The typed columns (first component, then the second and third by type, see
    ``sharedcare.record.search.composite``) are what searches compare. The key leads with
    ``(param, code1)``, so it is the search index; ``combo`` (a 64-bit key of the whole
    combination, ``sharedcare.record.keys.combination_key``) keeps rows unique without
    storing the combination's JSON in the key.
    """

    __tablename__ = "idx_composite"
    __table_args__ = (Index("ix_idx_composite_res", "res"), _WITHOUT_ROWID)

    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    code1: Mapped[str] = personal_data(Text(), primary_key=True)
    combo: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    res: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    system1: Mapped[str | None] = mapped_column(Text())
    code2: Mapped[str | None] = personal_data(Text())
    system2: Mapped[str | None] = personal_data(Text())
    unit2: Mapped[str | None] = mapped_column(Text())
    number2: Mapped[Any] = mapped_column(Numeric(asdecimal=True), nullable=True)
    low2: Mapped[int | None] = personal_data(BigInteger())
    high2: Mapped[int | None] = personal_data(BigInteger())
    number3: Mapped[Any] = mapped_column(Numeric(asdecimal=True), nullable=True)


class AuditRecord(Base):
    """One AuditEvent (IHE Basic Audit Log Patterns shape) per interaction, append-only."""

    __tablename__ = "audit_event"
    # The trail is read newest first, paged by (recorded, pk), by patient, user or neither
    # (sharedcare.record.audit_search; migration 0010).
    __table_args__ = (
        Index("ix_audit_event_recorded_pk", "recorded", "pk"),
        Index("ix_audit_event_patient_recorded", "patient", "recorded", "pk"),
        Index("ix_audit_event_agent_recorded", "agent", "recorded", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    recorded: Mapped[int] = mapped_column(BigInteger, doc="epoch microseconds, UTC")
    interaction: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(4), doc="FHIR AuditEvent.outcome: 0, 4, 8, 12")
    agent: Mapped[str] = mapped_column(String(200))
    patient: Mapped[str | None] = personal_data(String(100))
    content: Mapped[bytes] = personal_data(JsonDocument())
