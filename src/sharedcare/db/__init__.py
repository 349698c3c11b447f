"""Database layer: engines for SQLite and PostgreSQL, tables and Alembic migrations."""
