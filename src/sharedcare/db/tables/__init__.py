"""Tables, as typed SQLAlchemy 2 declarative models.

Columns that may hold personal data are declared with :func:`personal_data`, which
marks them in ``Column.info``; the data-protection tests walk the metadata to find them.
API schemas (pydantic) are kept apart from these tables, in the ``api`` package.
"""

from sharedcare.db.tables.base import Base, personal_data, personal_data_columns
from sharedcare.db.tables.bulk import BulkExportJob
from sharedcare.db.tables.identity import (
    IdentityGolden,
    IdentityLink,
    IdentityMerge,
    IdentityReview,
    IdentityState,
    IdentityTrail,
)
from sharedcare.db.tables.ingest import IdentityAction, Message, MessageStage
from sharedcare.db.tables.platform import Feed, Organisation
from sharedcare.db.tables.record import (
    AuditRecord,
    IdxComposite,
    IdxDate,
    IdxNumber,
    IdxQuantity,
    IdxReference,
    IdxString,
    IdxToken,
    IdxUri,
    Resource,
    ResourceHistory,
    SearchParamId,
    meta_source,
    meta_source_sorted,
)

__all__ = [
    "AuditRecord",
    "Base",
    "BulkExportJob",
    "Feed",
    "IdentityAction",
    "IdentityGolden",
    "IdentityLink",
    "IdentityMerge",
    "IdentityReview",
    "IdentityState",
    "IdentityTrail",
    "IdxComposite",
    "IdxDate",
    "IdxNumber",
    "IdxQuantity",
    "IdxReference",
    "IdxString",
    "IdxToken",
    "IdxUri",
    "Message",
    "MessageStage",
    "Organisation",
    "Resource",
    "ResourceHistory",
    "SearchParamId",
    "meta_source",
    "meta_source_sorted",
    "personal_data",
    "personal_data_columns",
]
