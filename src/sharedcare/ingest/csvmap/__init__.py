"""CSV feeds mapped to FHIR R4 by declarative column mappings (docs/reference/csv-mappings.md).

Each row of a CSV file is one message in the ingest pipeline: stored with its bytes, mapped
by the feed's mapping (:func:`map_row`), written to the record, and kept in the error queue
with a reason naming the column when it cannot be.
"""

from sharedcare.ingest.csvmap.render import CSV_NAMESPACE, CsvRowError, MappedRow, map_row, row_key
from sharedcare.ingest.csvmap.spec import (
    ColumnSpec,
    CsvMapping,
    MappingSpecError,
    ResourceSpec,
    available_mappings,
    get_mapping,
    load_mapping,
    mapping_for_file,
)

__all__ = [
    "CSV_NAMESPACE",
    "ColumnSpec",
    "CsvMapping",
    "CsvRowError",
    "MappedRow",
    "MappingSpecError",
    "ResourceSpec",
    "available_mappings",
    "get_mapping",
    "load_mapping",
    "map_row",
    "mapping_for_file",
    "row_key",
]
