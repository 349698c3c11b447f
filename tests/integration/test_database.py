"""The database layer on SQLite and PostgreSQL: engines and migrations."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from sharedcare.db.engine import DatabaseUrlError, create_engine, normalise_url, write_connection
from sharedcare.db.migrate import current_revision, head_revision, include_object, upgrade
from sharedcare.db.tables import Base, personal_data_columns


def test_migrations_reach_head_and_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": include_object(engine.dialect.name),
                },
            ),
            Base.metadata,
        )
    assert diff == [], "the models and the migrations disagree; write a migration"


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert {"organisation", "feed"} <= set(inspect(engine).get_table_names())


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), write_connection(engine) as connection:
        connection.execute(
            text(
                "INSERT INTO feed (name, organisation_ods_code, protocol, sending_application,"
                " sending_facility, message_count, error_count)"
                " VALUES ('x', 'NOPE', 'hl7v2', 'a', 'f', 0, 0)"
            )
        )


def test_integrity_errors_hide_parameters(engine: Engine) -> None:
    secret = "Sentinel-Patient-Name"
    with pytest.raises(IntegrityError) as caught, write_connection(engine) as connection:
        connection.execute(
            text("INSERT INTO organisation (ods_code, name, kind) VALUES (:c, :n, :k)"),
            [{"c": "X1", "n": secret, "k": "gp"}, {"c": "X1", "n": secret, "k": "gp"}],
        )
    assert secret not in str(caught.value)


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("sqlite:///:memory:", "sqlite+pysqlite"),
    ],
)
def test_urls_select_the_right_driver(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_say_how_to_fix(url: str) -> None:
    with pytest.raises(DatabaseUrlError, match="sqlite:///"):
        normalise_url(url)


def test_personal_data_columns_are_marked() -> None:
    # The platform tables hold no personal data; later tables mark theirs.
    marked = {column.table.name for column in personal_data_columns()}
    assert marked.isdisjoint({"organisation", "feed"})
