"""Bulk loading of FHIR JSON, NDJSON and Bundle files into the record.

* A **transaction** or **batch** Bundle is processed as if POSTed to the base URL.
* Any other Bundle (collection, searchset, document…) and every NDJSON file is loaded
  resource by resource: a resource with an id is written as an update (so reloading the
  same files creates no new versions), one without is created. Resources are applied in
  batches of :data:`BATCH` with one database transaction each.
* A file holding one resource is loaded the same way.

Nothing is lost silently: each resource that fails validation is reported with its file,
line or entry, and the path of the problem, never its values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sharedcare.db.engine import write_connection
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.bundles import process_bundle
from sharedcare.record.errors import RecordError
from sharedcare.record.instants import now_us
from sharedcare.record.repository import Repository, new_id, same_content
from sharedcare.record.sqlstore import PendingWrite

__all__ = ["BATCH", "LoadReport", "load_paths", "loadable_files"]

BATCH = 500
SUFFIXES = (".json", ".ndjson", ".jsonl")


@dataclass(slots=True)
class LoadReport:
    """What a load did."""

    files: int = 0
    written: int = 0
    unchanged: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.failed += 1
        if len(self.problems) < 1000:
            self.problems.append(f"{where}: {message}")


def loadable_files(paths: list[Path]) -> list[Path]:
    """The files to load: each file given, and every JSON/NDJSON file under each folder."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES))
        else:
            files.append(path)
    return files


def _resources(path: Path, report: LoadReport) -> Iterator[tuple[str, Any]]:
    """(where, item) for each resource or bundle in ``path``."""
    if path.suffix.lower() in {".ndjson", ".jsonl"}:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield f"{path.name}:{number}", orjson.loads(line)
                    except orjson.JSONDecodeError:
                        report.problem(f"{path.name}:{number}", "not valid JSON")
        return
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        report.problem(path.name, f"not valid JSON (at character {error.pos})")
        return
    yield path.name, document


def _flatten(where: str, item: Any) -> Iterator[tuple[str, Any]]:
    """Yield each resource of a non-transaction Bundle, or the item itself."""
    if (
        isinstance(item, dict)
        and item.get("resourceType") == "Bundle"
        and item.get("type") not in {"transaction", "batch"}
    ):
        for index, entry in enumerate(item.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if resource is not None:
                yield f"{where} entry {index}", resource
        return
    yield where, item


def _apply_batch(
    repo: Repository, batch: list[tuple[str, dict[str, Any]]], report: LoadReport
) -> None:
    keys = [(r["resourceType"], r["id"]) for _, r in batch if isinstance(r.get("id"), str)]
    with repo.engine.connect() as connection:
        current = repo.store.read_many(connection, keys)
    now = now_us()
    writes: list[PendingWrite] = []
    seen: set[tuple[str, str]] = set()
    for where, resource in batch:
        try:
            rtype = resource.get("resourceType")
            rid = resource.get("id")
            if not isinstance(rid, str):
                rid = new_id()
            key = (str(rtype), rid)
            if key in seen:
                report.problem(where, f"{rtype}/{rid} appears twice in one batch; kept the first")
                continue
            seen.add(key)
            existing = current.get(key)
            if existing and not existing.deleted and same_content(existing.json(), resource):
                report.unchanged += 1
                continue
            version = existing.version_id + 1 if existing else 1
            writes.append(
                repo.prepare(
                    resource, id=rid, version_id=version, now=now, existed=existing is not None
                )
            )
        except RecordError as error:
            report.problem(where, error.message)
    if not writes:
        return
    audit = AuditEntry("batch", "0", description=f"load of {len(writes)} resources")
    audit.entities = [f"{w.resource_type}/{w.id}/_history/{w.version_id}" for w in writes]
    with write_connection(repo.engine) as connection:
        repo.store.apply(connection, writes)
        write_audit(connection, repo.context, [audit])
    repo.committed(writes)
    report.written += len(writes)


def load_paths(
    repo: Repository,
    files: list[Path],
    *,
    progress: Callable[[int], None] | None = None,
    file_done: Callable[[Path], None] | None = None,
) -> LoadReport:
    """Load ``files`` into the record through ``repo``.

    Args:
        repo: The repository, built for the loading user.
        files: Files from :func:`loadable_files`.
        progress: Called with the number of resources handled since the last call.
        file_done: Called after each file has been read (its last batch may still be
            pending until the next file fills it or the load ends).
    """
    report = LoadReport()
    batch: list[tuple[str, dict[str, Any]]] = []

    def flush() -> None:
        if batch:
            _apply_batch(repo, batch, report)
            if progress:
                progress(len(batch))
            batch.clear()

    for path in files:
        report.files += 1
        for where, item in _resources(path, report):
            if (
                isinstance(item, dict)
                and item.get("resourceType") == "Bundle"
                and item.get("type") in {"transaction", "batch"}
            ):
                flush()
                try:
                    response = process_bundle(repo, item)
                    statuses = [e.get("response", {}).get("status", "") for e in response["entry"]]
                    report.written += sum(1 for s in statuses if s.startswith(("200", "201")))
                    for index, status in enumerate(statuses):
                        if not status.startswith(("2",)):
                            report.problem(f"{where} entry {index}", f"status {status}")
                except RecordError as error:
                    report.problem(where, error.message)
                if progress:
                    progress(len(item.get("entry") or []))
                continue
            for inner_where, resource in _flatten(where, item):
                if not isinstance(resource, dict) or not isinstance(
                    resource.get("resourceType"), str
                ):
                    report.problem(inner_where, "not a FHIR resource (no resourceType)")
                    continue
                batch.append((inner_where, resource))
                if len(batch) >= BATCH:
                    flush()
        if file_done:
            file_done(path)
    flush()
    if report.written:  # a bulk load: searches should be planned with fresh statistics
        repo.store.refresh_statistics()
    return report
