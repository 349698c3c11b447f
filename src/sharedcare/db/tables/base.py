"""The declarative base, naming conventions and the personal-data marker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, MetaData
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every sharedcare table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def personal_data(*args: Any, **kwargs: Any) -> Any:
    """A ``mapped_column`` that may hold personal data (patient-identifiable information).

    Accepts the same arguments as :func:`sqlalchemy.orm.mapped_column`.
    """
    info = dict(kwargs.pop("info", None) or {})
    info["personal_data"] = True
    return mapped_column(*args, info=info, **kwargs)


def personal_data_columns(metadata: MetaData = Base.metadata) -> list[Column[Any]]:
    """Every column marked with :func:`personal_data`, across all tables."""
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if column.info.get("personal_data")
    ]
