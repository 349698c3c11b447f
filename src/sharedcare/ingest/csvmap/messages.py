"""CSV files into the ingest pipeline: one message per row, stored, mapped and written.

A row's stored bytes are the file's header line and the row itself, as CSV, so the message
can be mapped again from the ``message`` table alone (recovery after a restart, and replay
after a mapping fix). Its control id is ``<file name>#<row key>``: sending the same file
again stores nothing new, and a later file with the same row key is a new message whose
resources become new versions of the same ids.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from sharedcare.ingest.csvmap.render import CsvRowError, map_row, row_key
from sharedcare.ingest.csvmap.spec import CsvMapping, MappingSpecError, get_mapping
from sharedcare.ingest.hl7v2.mapping import MappedMessage
from sharedcare.ingest.hl7v2.parse import MessageHeader
from sharedcare.ingest.stages import Stage
from sharedcare.ingest.store import FeedRegistry, Incoming, store_messages
from sharedcare.ingest.writer import ToWrite, write_messages
from sharedcare.record.sqlstore import SqlStore

__all__ = [
    "CsvFileError",
    "CsvFileReport",
    "ingest_csv_file",
    "map_stored_row",
    "read_csv",
    "row_bytes",
]

PROTOCOL = "csv"
_CONTROL_ID_MAX = 200


class CsvFileError(ValueError):
    """A CSV file that cannot be taken at all (unreadable, or its header lacks columns)."""


@dataclass(slots=True)
class CsvFileReport:
    """What loading one file did."""

    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    written: int = 0
    failed: int = 0
    resources: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) of each row that failed."""


def read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells) for each non-blank row.

    Raises:
        CsvFileError: If the file cannot be read, is empty or is not UTF-8 CSV.
    """
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as error:
        raise CsvFileError(
            f"{path.name}: not a readable UTF-8 CSV file ({type(error).__name__})"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if not header or not any(h.strip() for h in header):
        raise CsvFileError(f"{path.name}: no header line; a CSV feed starts with its header")

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    yield reader.line_num, cells
        except csv.Error:
            raise CsvFileError(
                f"{path.name} line {reader.line_num + 1}: not readable as CSV (check quoting)"
            ) from None

    return [h.strip() for h in header], rows()


def row_bytes(header: list[str], cells: list[str]) -> bytes:
    """The stored form of a row: the header line and the row, as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(cells)
    return buffer.getvalue().encode("utf-8")


def _control_id(file_name: str, key: str | None, line: int) -> str:
    control = f"{file_name}#{key}" if key is not None else f"{file_name}#line-{line}"
    if len(control) > _CONTROL_ID_MAX:
        digest = hashlib.sha256(control.encode("utf-8")).hexdigest()[:32]
        control = f"{file_name[:100]}#sha256-{digest}"
    return control


def _header(mapping: CsvMapping, organisation: str, control_id: str) -> MessageHeader:
    return MessageHeader(
        sending_application=mapping.feed,
        sending_facility=organisation,
        receiving_application="SHAREDCARE",
        receiving_facility="",
        message_code="CSV",
        trigger_event=mapping.name,
        structure="",
        control_id=control_id,
        processing_id="P",
        version="",
    )


def _map(mapping: CsvMapping, organisation: str, control_id: str, raw: bytes) -> MappedMessage:
    header, cells = _split(raw)
    mapped = map_row(mapping, header, cells, organisation)
    return MappedMessage(_header(mapping, organisation, control_id), mapped.resources)


def _split(raw: bytes) -> tuple[list[str], list[str]]:
    try:
        lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        raise CsvRowError("the stored row is not readable UTF-8 CSV") from None
    if len(lines) != 2:
        raise CsvRowError("the stored row does not hold a header line and one row")
    return lines[0], lines[1]


def map_stored_row(
    mapping_name: str, organisation: str, control_id: str, raw: bytes
) -> MappedMessage:
    """Map a stored CSV row again (recovery and replay) with the mapping as it is now.

    Raises:
        CsvRowError: The row cannot be mapped (reason names the column).
        MappingSpecError: The mapping is no longer available or is broken.
    """
    return _map(get_mapping(mapping_name), organisation, control_id, raw)


def _check_header(mapping: CsvMapping, header: list[str], name: str) -> None:
    missing = [c for c in mapping.required_columns if c not in header]
    if missing:
        raise CsvFileError(
            f"{name}: the header lacks column {', '.join(missing)}, which the {mapping.name} "
            "mapping requires; nothing from this file was stored"
        )


def ingest_csv_file(
    engine: Engine,
    path: Path,
    mapping: CsvMapping,
    organisation: str,
    *,
    store: SqlStore | None = None,
    registry: FeedRegistry | None = None,
    batch_size: int = 500,
    file_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> CsvFileReport:
    """Store, map and write every row of a CSV file, a batch at a time.

    Each batch of rows is stored in one transaction (bad rows as ``failed`` with their
    reason), then the mapped rows are written to the record with their stage change. A
    resent file stores nothing new; a resent row that had failed is tried again.

    Args:
        engine: The migrated database.
        path: The file (``.csv`` or ``.csv.gz``).
        mapping: The feed's mapping.
        organisation: The sending organisation's code (the feed's facility).
        store: The record store (made if not given).
        registry: Feed registry to reuse across files.
        batch_size: Rows per transaction.
        file_name: The name idempotency is keyed on (default: the file's name; the drop
            folder passes the name the file arrived with).
        progress: Called with the number of rows finished after each batch.

    Raises:
        CsvFileError: If the file cannot be read or its header lacks required columns;
            nothing is stored then.
    """
    name = file_name or path.name
    header, rows = read_csv(path)
    _check_header(mapping, header, name)
    store = store or SqlStore(engine)
    registry = registry or FeedRegistry()
    report = CsvFileReport()
    batch: list[tuple[int, list[str]]] = []
    context = _Context(engine, store, registry, mapping, organisation, name, header)
    for line, cells in rows:
        batch.append((line, cells))
        if len(batch) >= batch_size:
            _ingest_batch(context, batch, report)
            if progress is not None:
                progress(len(batch))
            batch = []
    if batch:
        _ingest_batch(context, batch, report)
        if progress is not None:
            progress(len(batch))
    return report


@dataclass(frozen=True, slots=True)
class _Context:
    engine: Engine
    store: SqlStore
    registry: FeedRegistry
    mapping: CsvMapping
    organisation: str
    name: str
    header: list[str]


def _ingest_batch(
    context: _Context, batch: list[tuple[int, list[str]]], report: CsvFileReport
) -> None:
    mapping, organisation, name, header = (
        context.mapping,
        context.organisation,
        context.name,
        context.header,
    )
    items: list[Incoming] = []
    mapped: list[MappedMessage | None] = []
    lines: list[int] = []
    for line, cells in batch:
        key = row_key(mapping, dict(zip(header, cells, strict=False)))
        control = _control_id(name, key, line)
        raw = row_bytes(header, cells)
        try:
            message = _map(mapping, organisation, control, raw)
        except CsvRowError as error:
            items.append(
                Incoming(
                    PROTOCOL,
                    mapping.feed,
                    organisation,
                    control,
                    mapping.name,
                    raw,
                    Stage.FAILED,
                    Stage.MAPPED.value,
                    error.reason,
                )
            )
            mapped.append(None)
        else:
            items.append(
                Incoming(
                    PROTOCOL, mapping.feed, organisation, control, mapping.name, raw, Stage.MAPPED
                )
            )
            mapped.append(message)
        lines.append(line)
    report.rows += len(items)
    stored = store_messages(context.engine, items, context.registry)
    to_write: list[ToWrite] = []
    line_of: dict[int, int] = {}
    for item, maybe, result, line in zip(items, mapped, stored, lines, strict=True):
        if result.duplicate:
            report.duplicates += 1
            continue
        report.stored += 1
        line_of[result.message_id] = line
        if maybe is None:
            report.failed += 1
            report.failures.append((line, item.error or ""))
        else:
            to_write.append(ToWrite(result.message_id, result.feed, maybe))
    for outcome in write_messages(context.engine, context.store, to_write):
        if outcome.stage == Stage.FAILED.value:
            report.failed += 1
            report.failures.append((line_of.get(outcome.message_id, 0), outcome.error or ""))
        else:
            report.written += 1
            report.resources += outcome.resources


def mapping_error_reason(error: CsvRowError | MappingSpecError) -> str:
    """The reason to store for a row that could not be mapped again."""
    return error.reason if isinstance(error, CsvRowError) else str(error)
