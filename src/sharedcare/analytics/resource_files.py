"""Folders of FHIR NDJSON read into DuckDB, Bundles unpacked: shared by ``analytics run``
and ``analytics export``.

Each line of a file is one JSON object: a FHIR resource, or a ``Bundle``
(https://hl7.org/fhir/R4/bundle.html) whose ``entry[].resource`` are the resources (the
Synthetic Dorset GP and Dorset HealthCare files hold one ``transaction`` Bundle per line).
Bundles themselves are never kept: views and indicators see only their entries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sharedcare.analytics.views import Source

__all__ = ["RESOURCE_SUFFIXES", "ResourceFileError", "load_resource_files", "resource_files"]

#: File names read as NDJSON (DuckDB detects gzip from the ``.gz`` suffix).
RESOURCE_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl")


class ResourceFileError(ValueError):
    """The NDJSON files could not be read; the message says how to fix it."""


def resource_files(folder: Path) -> list[Path]:
    """Every NDJSON file below ``folder`` (symbolic links followed), in a stable order."""
    return sorted(
        Path(root) / name
        for root, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.endswith(RESOURCE_SUFFIXES)
    )


def load_resource_files(
    con: Any, files: list[Path], table: str = "resources"
) -> tuple[Source, int]:
    """Read ``files`` once into the DuckDB table ``table(resource_type, resource)``.

    Lines that are Bundles are replaced by their entries' resources; entries without a
    resource (e.g. ``DELETE`` requests) are skipped.

    Returns:
        The source to compile views over, and how many resources it holds.

    Raises:
        ResourceFileError: a line is not a JSON object (no line content is quoted).
    """
    import duckdb

    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    ident = '"' + table.replace('"', '""') + '"'
    try:
        con.execute(
            f"CREATE OR REPLACE TEMPORARY TABLE {ident} AS "
            f"WITH docs AS MATERIALIZED (SELECT json AS doc FROM read_ndjson_objects([{quoted}])), "
            "resources AS (SELECT doc AS resource FROM docs "
            "WHERE coalesce(doc ->> '$.resourceType', '') <> 'Bundle' "
            "UNION ALL SELECT CAST(r AS JSON) AS resource FROM (SELECT unnest("
            "json_extract(doc, '$.entry[*].resource')) AS r FROM docs "
            "WHERE doc ->> '$.resourceType' = 'Bundle') WHERE r IS NOT NULL) "
            "SELECT resource ->> '$.resourceType' AS resource_type, resource FROM resources"
        )
        row = con.execute(f"SELECT count(*) FROM {ident}").fetchone()
    except duckdb.Error:
        raise ResourceFileError(
            "could not read the NDJSON files; each line must be one FHIR resource or Bundle "
            "as a JSON object"
        ) from None
    return Source(ident, "resource", "resource_type"), int(row[0]) if row else 0
