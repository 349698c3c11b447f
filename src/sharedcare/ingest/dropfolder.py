"""A watched drop folder: FHIR and CSV files dropped by a feed, taken into the pipeline.

Layout (``ROOT`` is the folder watched; one sub-folder per sending organisation)::

    ROOT/<ORG>/                     a feed folder; <ORG> is the organisation's code
    ROOT/<ORG>/<file>               dropped here (write elsewhere, or as .part, then rename)
    ROOT/<ORG>/.claimed/<file>      being processed
    ROOT/<ORG>/done/<file>          processed (rows or documents that failed are in the
                                    error queue, each with its reason)
    ROOT/<ORG>/failed/<file>        could not be taken at all, beside <file>.reason.txt

``.json``, ``.ndjson`` and ``.jsonl`` files (optionally ``.gz``) are FHIR: every document is
stored as a message and processed as if POSTed to ``/fhir``. ``.csv`` files go through the
shipped CSV mapping whose ``files`` patterns match their name (``rtt-*.csv`` → ``rtt``).
This is the same layout ``sharedcare synth`` writes, so a synthetic organisation's folder
can be dropped in whole.

A file is **claimed** by renaming it into ``.claimed/`` (atomic on one file system, so two
watchers never take the same file). Everything taken is stored in the ``message`` table
with an idempotency key of file name and row key (CSV) or line (FHIR), so a file left in
``.claimed/`` by a crash is simply processed again on the next start, and nothing is stored
twice. Names starting with ``.`` and ending in ``.part``, ``.tmp`` or ``.reason.txt`` are
never taken.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from sharedcare.ingest.csvmap.messages import CsvFileError, ingest_csv_file
from sharedcare.ingest.csvmap.spec import mapping_for_file
from sharedcare.ingest.fhirfeed import FhirFileError, ingest_fhir_file, is_fhir_file
from sharedcare.ingest.store import FeedRegistry
from sharedcare.record.sqlstore import SqlStore

__all__ = ["CLAIMED", "DONE", "FAILED", "DropFolder", "DroppedFile"]

logger = logging.getLogger(__name__)

CLAIMED = ".claimed"
DONE = "done"
FAILED = "failed"
_IGNORED_SUFFIXES = (".part", ".tmp", ".reason.txt", ".swp")
FHIR_APPLICATION = "dropfolder"


@dataclass(frozen=True, slots=True)
class DroppedFile:
    """What happened to one file.

    Attributes:
        feed: The feed folder (organisation code).
        name: The file name.
        outcome: ``done`` or ``failed``.
        kind: ``fhir``, a CSV mapping name, or ``unknown``.
        items: Rows or documents read.
        stored: New messages stored (the rest were resends).
        written: Messages written to the record.
        errors: Messages that went to the error queue.
        reason: Why a ``failed`` file could not be taken.
    """

    feed: str
    name: str
    outcome: str
    kind: str
    items: int = 0
    stored: int = 0
    written: int = 0
    errors: int = 0
    reason: str = ""


def _takeable(path: Path) -> bool:
    name = path.name
    return (
        path.is_file() and not name.startswith(".") and not name.lower().endswith(_IGNORED_SUFFIXES)
    )


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    if not target.exists():
        return target
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return folder / f"{stamp}-{name}"


class DropFolder:
    """Watches ``root`` and takes every file dropped into its feed folders.

    Args:
        engine: The migrated database.
        root: The drop folder (created if missing).
        on_file: Called with each file's :class:`DroppedFile` when it is finished.
    """

    def __init__(
        self,
        engine: Engine,
        root: Path,
        *,
        on_file: Callable[[DroppedFile], None] | None = None,
    ) -> None:
        self.engine = engine
        self.root = root
        self.on_file = on_file
        self._store = SqlStore(engine)
        self._registry = FeedRegistry()
        self._store_ready = False

    def feeds(self) -> list[Path]:
        """The feed folders (sub-folders of the root not starting with ``.``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _claimed(self) -> Iterator[Path]:
        """Files to process: first those left claimed by an earlier run, then new ones."""
        for feed in self.feeds():
            claimed = feed / CLAIMED
            if claimed.is_dir():
                yield from sorted(p for p in claimed.iterdir() if p.is_file())
            for path in sorted(p for p in feed.iterdir() if _takeable(p)):
                claimed.mkdir(exist_ok=True)
                target = claimed / path.name
                try:
                    path.rename(target)  # atomic: only one watcher wins
                except FileNotFoundError:
                    continue  # another watcher took it
                yield target

    def scan(self) -> list[DroppedFile]:
        """Process every file waiting now (and any left claimed by a crash); return them."""
        if not self._store_ready:
            self._store.ensure_params()
            self._store_ready = True
        results = []
        for path in self._claimed():
            result = self._process(path)
            results.append(result)
            if self.on_file is not None:
                self.on_file(result)
        return results

    def watch(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Scan every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.scan()
            except Exception as error:  # keep watching; the file stays claimed for next time
                logger.error("drop folder scan failed: %s", type(error).__name__)
            stop.wait(interval)

    def _process(self, path: Path) -> DroppedFile:
        feed_dir = path.parent.parent
        organisation = feed_dir.name
        name = path.name
        if is_fhir_file(name):
            try:
                fhir = ingest_fhir_file(
                    self.engine,
                    path,
                    FHIR_APPLICATION,
                    organisation,
                    store=self._store,
                    registry=self._registry,
                    file_name=name,
                )
            except FhirFileError as error:
                return self._fail(path, "fhir", str(error))
            result = DroppedFile(
                organisation,
                name,
                DONE,
                "fhir",
                fhir.documents,
                fhir.stored,
                fhir.written,
                fhir.failed,
            )
            return self._done(path, result)
        mapping = mapping_for_file(name) if name.lower().endswith((".csv", ".csv.gz")) else None
        if mapping is None:
            return self._fail(
                path,
                "unknown",
                "no feed takes this file name: drop FHIR as .json or .ndjson, or CSV named "
                "for its mapping (see `sharedcare ingest mappings`)",
            )
        try:
            csv_report = ingest_csv_file(
                self.engine,
                path,
                mapping,
                organisation,
                store=self._store,
                registry=self._registry,
                file_name=name,
            )
        except CsvFileError as error:
            return self._fail(path, mapping.name, str(error))
        result = DroppedFile(
            organisation,
            name,
            DONE,
            mapping.name,
            csv_report.rows,
            csv_report.stored,
            csv_report.written,
            csv_report.failed,
        )
        return self._done(path, result)

    @staticmethod
    def _done(path: Path, result: DroppedFile) -> DroppedFile:
        folder = path.parent.parent / DONE
        folder.mkdir(exist_ok=True)
        path.replace(_free_name(folder, path.name))
        logger.info(
            "drop folder %s: %s file taken (%d items, %d errors)",
            result.feed,
            result.kind,
            result.items,
            result.errors,
        )
        return result

    @staticmethod
    def _fail(path: Path, kind: str, reason: str) -> DroppedFile:
        folder = path.parent.parent / FAILED
        folder.mkdir(exist_ok=True)
        target = _free_name(folder, path.name)
        path.replace(target)
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        logger.warning(
            "drop folder %s: a %s file could not be taken", path.parent.parent.name, kind
        )
        return DroppedFile(path.parent.parent.name, path.name, FAILED, kind, reason=reason)
