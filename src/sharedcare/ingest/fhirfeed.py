"""FHIR files into the ingest pipeline: one message per document, stored, then processed.

A ``.json`` file is one document; ``.ndjson``/``.jsonl`` files (optionally ``.gz``) hold one
per line. Each document is stored as a ``fhir`` message (stage ``stored``) with its bytes,
then processed as if POSTed to ``/fhir`` (https://hl7.org/fhir/R4/http.html#transaction):
a batch or transaction Bundle as it is, any other resource as a one-entry transaction (PUT
at its id, or POST when it has none). The message then moves to ``written``, or to
``failed`` with the OperationOutcome's diagnostics (which name paths, never values).

The bundle commits in its own transaction and the stage change follows, so a crash between
the two leaves the message ``stored``; recovery processes it again, which for PUTs (the
usual shape of a feed's bundles) changes nothing.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from sharedcare.db.engine import write_connection
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRef, FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import Outcome, feed_context, finish_messages
from sharedcare.record.bundles import process_bundle
from sharedcare.record.errors import RecordError
from sharedcare.record.repository import Repository
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "FHIR_PROTOCOL",
    "FhirFileError",
    "FhirFileReport",
    "fhir_documents",
    "ingest_fhir_file",
    "is_fhir_file",
    "process_fhir_rows",
]

FHIR_PROTOCOL = "fhir"
_SUFFIXES = (".json", ".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz", ".json.gz")


class FhirFileError(ValueError):
    """A FHIR file that cannot be read at all."""


@dataclass(slots=True)
class FhirFileReport:
    """What loading one file did."""

    documents: int = 0
    stored: int = 0
    duplicates: int = 0
    written: int = 0
    failed: int = 0
    resources: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) of each document that failed."""


def is_fhir_file(name: str) -> bool:
    """Whether a file name has a FHIR JSON or NDJSON suffix."""
    return name.lower().endswith(_SUFFIXES)


def fhir_documents(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each document in a ``.json`` or ``.ndjson`` file.

    Raises:
        FhirFileError: If the file cannot be read.
    """
    name = path.name.lower()
    try:
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    except OSError as error:
        raise FhirFileError(f"{path.name}: could not be read ({type(error).__name__})") from None
    if name.removesuffix(".gz").endswith(".json"):
        if data.strip():
            yield 1, data.strip()
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def _as_bundle(document: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise RecordError("the document is not a FHIR resource (no resourceType)")
    rtype = document["resourceType"]
    if rtype == "Bundle" and document.get("type") in ("batch", "transaction"):
        return document, f"Bundle/{document['type']}"
    rid = document.get("id")
    request = (
        {"method": "PUT", "url": f"{rtype}/{rid}"}
        if isinstance(rid, str) and rid
        else {"method": "POST", "url": rtype}
    )
    entry = {"resource": document, "request": request}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, rtype


def _message_type(raw: bytes) -> str:
    try:
        return _as_bundle(orjson.loads(raw))[1][:40]
    except (orjson.JSONDecodeError, RecordError):
        return "unreadable"


def _process_one(store: SqlStore, feed: FeedRef, message_id: int, raw: bytes) -> Outcome:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Outcome(message_id, Stage.FAILED.value, error="not valid JSON; fix and resend")
    try:
        bundle, _ = _as_bundle(document)
        response = process_bundle(Repository(store, feed_context(feed)), bundle)
    except RecordError as error:
        return Outcome(message_id, Stage.FAILED.value, error=error.message[:2000])
    failed = []
    written = 0
    for index, entry in enumerate(response.get("entry", [])):
        status = str(entry.get("response", {}).get("status", ""))
        if status.startswith("2"):
            written += 1
            continue
        issues = entry.get("response", {}).get("outcome", {}).get("issue", [])
        why = "; ".join(str(i.get("diagnostics", "")) for i in issues) or status
        failed.append(f"Bundle.entry[{index}]: {why}")
    if failed:
        return Outcome(
            message_id,
            Stage.FAILED.value,
            written,
            error=f"{len(failed)} batch entries failed: " + " | ".join(failed)[:1900],
        )
    return Outcome(message_id, Stage.WRITTEN.value, written)


def process_fhir_rows(engine: Engine, store: SqlStore, rows: Sequence[Any]) -> list[Outcome]:
    """Process stored FHIR messages (rows with id, raw, feed id/name/organisation).

    Used for new messages, recovery and replay alike.
    """
    outcomes = [
        _process_one(store, FeedRef(r.feed_id, r.feed_name, r.organisation), r.id, r.raw)
        for r in rows
    ]
    with write_connection(engine) as connection:
        finish_messages(connection, outcomes, {r.id: r.feed_id for r in rows})
    return outcomes


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    raw: bytes
    feed_id: int
    feed_name: str
    organisation: str | None


def ingest_fhir_file(
    engine: Engine,
    path: Path,
    application: str,
    organisation: str,
    *,
    store: SqlStore | None = None,
    registry: FeedRegistry | None = None,
    batch_size: int = 100,
    file_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> FhirFileReport:
    """Store every document of a FHIR file as a message, then process each.

    Args:
        engine: The migrated database.
        path: ``.json`` or ``.ndjson``/``.jsonl`` (optionally ``.gz``).
        application: The feed's application name (e.g. the drop folder's name).
        organisation: The sending organisation's code.
        store: The record store (made if not given).
        registry: Feed registry to reuse across files.
        batch_size: Documents stored per transaction.
        file_name: The name idempotency is keyed on (default: the file's name).
        progress: Called with the number of documents finished after each batch.
    """
    name = file_name or path.name
    store = store or SqlStore(engine)
    registry = registry or FeedRegistry()
    report = FhirFileReport()
    batch: list[tuple[int, bytes]] = []

    def flush() -> None:
        items = [
            Incoming(
                FHIR_PROTOCOL,
                application,
                organisation,
                f"{name}#{line}"[:200],
                _message_type(raw),
                raw,
                Stage.STORED,
            )
            for line, raw in batch
        ]
        stored = store_messages(engine, items, registry)
        lines: dict[int, int] = {}
        rows: list[_Row] = []
        for (line, raw), result in zip(batch, stored, strict=True):
            report.documents += 1
            if result.duplicate:
                report.duplicates += 1
                continue
            report.stored += 1
            lines[result.message_id] = line
            feed = result.feed
            rows.append(_Row(result.message_id, raw, feed.id, feed.name, feed.organisation))
        for outcome in process_fhir_rows(engine, store, rows):
            report.resources += outcome.resources
            if outcome.stage == Stage.FAILED.value:
                report.failed += 1
                report.failures.append((lines[outcome.message_id], outcome.error or ""))
            else:
                report.written += 1
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for line, raw in fhir_documents(path):
        batch.append((line, raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report
