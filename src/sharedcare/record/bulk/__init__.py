"""FHIR Bulk Data export (https://hl7.org/fhir/uv/bulkdata/export.html).

* :mod:`~sharedcare.record.bulk.params`: the kick-off parameters (``_outputFormat``,
  ``_since``, ``_type``; lenient handling of the rest).
* :mod:`~sharedcare.record.bulk.jobs`: export jobs persisted in ``bulk_export_job``.
* :mod:`~sharedcare.record.bulk.exporter`: keyset-paged reads streamed into NDJSON files.
* :mod:`~sharedcare.record.bulk.worker`: the background thread that runs jobs.
* :mod:`~sharedcare.record.bulk.service`: kick-off, status, cancel and download, gated and
  audited for one caller.
"""

from sharedcare.record.bulk.exporter import ExportResult, run_export
from sharedcare.record.bulk.jobs import Job, JobStore
from sharedcare.record.bulk.params import (
    NDJSON,
    ExportSpec,
    Level,
    kickoff_parameters,
    parse_kickoff,
)
from sharedcare.record.bulk.service import BulkExports
from sharedcare.record.bulk.worker import BulkWorker

__all__ = [
    "NDJSON",
    "BulkExports",
    "BulkWorker",
    "ExportResult",
    "ExportSpec",
    "Job",
    "JobStore",
    "Level",
    "kickoff_parameters",
    "parse_kickoff",
    "run_export",
]
