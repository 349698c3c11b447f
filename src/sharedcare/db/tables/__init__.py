"""Tables, as typed SQLAlchemy 2 declarative models.

Columns that may hold personal data are declared with :func:`personal_data`, which
marks them in ``Column.info``; the data-protection tests walk the metadata to find them.
API schemas (pydantic) are kept apart from these tables, in the ``api`` package.
"""

from sharedcare.db.tables.base import Base, personal_data, personal_data_columns
from sharedcare.db.tables.platform import Feed, Organisation

__all__ = ["Base", "Feed", "Organisation", "personal_data", "personal_data_columns"]
