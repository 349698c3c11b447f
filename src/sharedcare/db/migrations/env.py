"""Alembic environment: migrations run on the connection sharedcare hands over.

Run from the command line with ``sharedcare db upgrade``. Developers adding a migration
can autogenerate a draft with ``alembic -c src/sharedcare/db/alembic.ini revision
--autogenerate -m "..."`` against ``SHAREDCARE_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from sharedcare.config import get_settings
from sharedcare.db.engine import create_engine, write_connection
from sharedcare.db.migrate import include_object
from sharedcare.db.tables import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(get_settings().resolved_database_url)
    with write_connection(engine) as conn:
        _run(conn)
    engine.dispose()
