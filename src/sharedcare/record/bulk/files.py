"""NDJSON output files, written as rows arrive: one or more files per resource type.

https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-output-file-request — each file holds
resources of one type only, one JSON resource per line. A type with more resources than the
file limit is split across ``Type-1.ndjson``, ``Type-2.ndjson``, ….
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["OutputFile", "OutputFiles"]

_BUFFER = 1 << 20  # bytes buffered per open file


@dataclass(slots=True)
class OutputFile:
    """One written file: the type of its resources, its name and how many lines it has."""

    type: str
    name: str
    count: int


class OutputFiles:
    """Open per-type files in ``folder``, each split at ``limit`` lines.

    Args:
        folder: The job's folder (created if missing).
        limit: Most lines in one file.
        prefix: Put before each file name (``deleted-`` for the deleted-resources files).
    """

    def __init__(self, folder: Path, limit: int, prefix: str = "") -> None:
        self.folder = folder
        self.limit = limit
        self.prefix = prefix
        self.files: list[OutputFile] = []
        self._open: dict[str, tuple[BinaryIO, OutputFile]] = {}
        self._parts: dict[str, int] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, resource_type: str, line: bytes) -> None:
        """Append one resource (JSON with no newline in it) to its type's current file."""
        current = self._open.get(resource_type)
        if current is None or current[1].count >= self.limit:
            current = self._next(resource_type, current)
        handle, record = current
        handle.write(line)
        handle.write(b"\n")
        record.count += 1

    def write_many(self, resource_type: str, lines: list[bytes]) -> None:
        """Append several resources of one type (one ``write`` call per file touched)."""
        while lines:
            current = self._open.get(resource_type)
            if current is None or current[1].count >= self.limit:
                current = self._next(resource_type, current)
            handle, record = current
            room = self.limit - record.count
            part, lines = lines[:room], lines[room:]
            handle.write(b"\n".join(part))
            handle.write(b"\n")
            record.count += len(part)

    def _next(
        self, resource_type: str, current: tuple[BinaryIO, OutputFile] | None
    ) -> tuple[BinaryIO, OutputFile]:
        if current is not None:
            current[0].close()
        part = self._parts.get(resource_type, 0) + 1
        self._parts[resource_type] = part
        record = OutputFile(resource_type, f"{self.prefix}{resource_type}-{part}.ndjson", 0)
        # Made again if a cancel removed it meanwhile; the worker removes it when it stops.
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = (self.folder / record.name).open("wb", buffering=_BUFFER)
        self.files.append(record)
        self._open[resource_type] = (handle, record)
        return handle, record

    @property
    def total(self) -> int:
        """Lines written so far, across every file."""
        return sum(f.count for f in self.files)

    def close(self) -> list[OutputFile]:
        """Flush and close every file; return them in the order they were started."""
        for handle, _ in self._open.values():
            handle.close()
        self._open.clear()
        return self.files
