"""Declarative CSV mappings: the file format, loaded and checked.

A mapping is a JSON document (package data under ``csvmap/mappings/``, or any file passed
by path) that says, for one CSV feed, which columns it has, how each is typed, and which
FHIR R4 resources every row makes. The format is described in
docs/reference/csv-mappings.md. :func:`load_mapping` checks a document thoroughly, so a
mistake in a mapping is reported when it is loaded, naming the place, not on the first row.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

__all__ = [
    "COLUMN_TYPES",
    "ColumnSpec",
    "CsvMapping",
    "MappingSpecError",
    "ResourceSpec",
    "available_mappings",
    "get_mapping",
    "load_mapping",
    "mapping_for_file",
]

COLUMN_TYPES = frozenset(
    {"string", "integer", "decimal", "date", "datetime", "code", "nhs-number", "ods-code"}
)
"""The column types a mapping may declare."""

_DEFAULT_FORMATS = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M"}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_ATTRIBUTES = {"code": ("system", "code", "display"), "nhs-number": ("system", "value")}
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class MappingSpecError(ValueError):
    """A mapping document is not valid; the message names where and how to fix it."""


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One declared column.

    Attributes:
        name: The header name.
        type: One of :data:`COLUMN_TYPES`.
        required: Whether an empty cell fails the row.
        format: strptime format for ``date`` and ``datetime``.
        timezone: Zone a ``datetime`` without an offset is read in.
        pattern: A regular expression the whole value must match.
        system: Code system for ``code`` columns.
        values: For ``code`` columns, source value → ``{"code", "display"}``.
    """

    name: str
    type: str
    required: bool = False
    format: str = ""
    timezone: str = "Europe/London"
    pattern: re.Pattern[str] | None = None
    system: str = ""
    values: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One resource made from each row."""

    alias: str
    resource_type: str
    template: dict[str, Any]
    key: tuple[str, ...] = ()
    hl7v2_key: tuple[str, ...] = ()
    when: str | None = None
    emit: bool = True


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """A checked mapping: columns, row key and resources."""

    name: str
    feed: str
    description: str
    files: tuple[str, ...]
    key: tuple[str, ...]
    columns: dict[str, ColumnSpec]
    resources: tuple[ResourceSpec, ...]

    @property
    def required_columns(self) -> list[str]:
        """Columns that must be in the header (and non-empty in every row)."""
        return [c.name for c in self.columns.values() if c.required]

    def matches(self, file_name: str) -> bool:
        """Whether a file of this name belongs to this mapping (by its ``files`` patterns)."""
        return any(fnmatch.fnmatchcase(file_name, pattern) for pattern in self.files)


def _need(doc: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (isinstance(value, str | list | dict) and not value):
        raise MappingSpecError(f"{where}: `{name}` is required and must be a {kind.__name__}")
    return value


def _column(name: str, doc: Any, where: str) -> ColumnSpec:
    if not isinstance(doc, dict):
        raise MappingSpecError(f"{where}: each column must be an object with a `type`")
    kind = doc.get("type")
    if kind not in COLUMN_TYPES:
        raise MappingSpecError(f"{where}: `type` must be one of {', '.join(sorted(COLUMN_TYPES))}")
    fmt = str(doc.get("format") or _DEFAULT_FORMATS.get(kind, ""))
    if kind in _DEFAULT_FORMATS:
        try:
            datetime.strptime(datetime(2024, 1, 31, 13, 5).strftime(fmt), fmt)
        except ValueError as error:
            raise MappingSpecError(f"{where}: `format` is not a usable strptime format") from error
    zone = str(doc.get("timezone") or "Europe/London")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise MappingSpecError(f"{where}: `timezone` is not an IANA time zone") from error
    pattern = None
    if doc.get("pattern"):
        try:
            pattern = re.compile(str(doc["pattern"]))
        except re.error as error:
            raise MappingSpecError(f"{where}: `pattern` is not a regular expression") from error
    values: dict[str, dict[str, str]] = {}
    if kind == "code":
        system = _need(doc, "system", str, where)
        raw_values = _need(doc, "values", dict, where)
        for source, target in raw_values.items():
            if not isinstance(target, dict) or not isinstance(target.get("code"), str):
                raise MappingSpecError(f"{where}: each of `values` needs a `code` string")
            values[source] = {k: str(v) for k, v in target.items() if k in ("code", "display")}
    else:
        system = str(doc.get("system") or "")
    return ColumnSpec(
        name=name,
        type=str(kind),
        required=bool(doc.get("required", False)),
        format=fmt,
        timezone=zone,
        pattern=pattern,
        system=system,
        values=values,
    )


def _placeholders(node: Any) -> list[str]:
    if isinstance(node, str):
        return _PLACEHOLDER.findall(node)
    if isinstance(node, list):
        return [p for item in node for p in _placeholders(item)]
    if isinstance(node, dict):
        found = [p for value in node.values() for p in _placeholders(value)]
        if "$if" in node:
            found.append(str(node["$if"]))
        return found
    return []


def _check_names(
    names: list[str], columns: dict[str, ColumnSpec], aliases: set[str], where: str
) -> None:
    for name in names:
        if name.startswith("$"):
            if name not in ("$org", "$feed"):
                raise MappingSpecError(f"{where}: unknown context value {{{name}}}")
        elif name.startswith("@"):
            if name[1:] not in aliases:
                raise MappingSpecError(f"{where}: {{{name}}} names no resource alias")
        else:
            column, _, attribute = name.partition(".")
            if column not in columns:
                raise MappingSpecError(f"{where}: {{{name}}} is not a declared column")
            if attribute and attribute not in _ATTRIBUTES.get(columns[column].type, ()):
                raise MappingSpecError(f"{where}: {{{name}}} names no part of a {column} value")


def _resource(index: int, doc: Any, where: str) -> ResourceSpec:
    here = f"{where} resources[{index}]"
    if not isinstance(doc, dict):
        raise MappingSpecError(f"{here}: must be an object")
    rtype = _need(doc, "resourceType", str, here)
    key = doc.get("key") or []
    hl7_key = doc.get("hl7v2Key") or []
    if bool(key) == bool(hl7_key):
        raise MappingSpecError(f"{here}: give exactly one of `key` and `hl7v2Key`")
    template = doc.get("template", {})
    if not isinstance(template, dict):
        raise MappingSpecError(f"{here}: `template` must be an object")
    return ResourceSpec(
        alias=str(doc.get("as") or f"r{index}"),
        resource_type=rtype,
        template=template,
        key=tuple(str(k) for k in key),
        hl7v2_key=tuple(str(k) for k in hl7_key),
        when=str(doc["when"]) if doc.get("when") else None,
        emit=bool(doc.get("emit", True)),
    )


def load_mapping(document: bytes | str | dict[str, Any], *, source: str = "mapping") -> CsvMapping:
    """Check and load a mapping document.

    Args:
        document: JSON text or bytes, or the parsed object.
        source: Where it came from, for error messages.

    Raises:
        MappingSpecError: Naming the first problem found and where.
    """
    if isinstance(document, bytes | str):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError as error:
            raise MappingSpecError(f"{source}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise MappingSpecError(f"{source}: a mapping is a JSON object")
    name = _need(document, "name", str, source)
    if not _NAME.match(name):
        raise MappingSpecError(f"{source}: `name` must be lower-case letters, digits and dashes")
    columns_doc = _need(document, "columns", dict, source)
    columns = {n: _column(n, d, f"{source} column {n}") for n, d in columns_doc.items()}
    key = tuple(str(k) for k in _need(document, "key", list, source))
    for column in key:
        if column not in columns or not columns[column].required:
            raise MappingSpecError(f"{source}: key column {column} must be a required column")
    specs = tuple(
        _resource(i, d, source) for i, d in enumerate(_need(document, "resources", list, source))
    )
    aliases = {s.alias for s in specs}
    if len(aliases) != len(specs):
        raise MappingSpecError(f"{source}: resource aliases (`as`) must be unique")
    for index, spec in enumerate(specs):
        here = f"{source} resources[{index}]"
        names = _placeholders([spec.template, list(spec.key), list(spec.hl7v2_key)])
        _check_names(names, columns, aliases, here)
        if spec.when is not None and spec.when not in columns:
            raise MappingSpecError(f"{here}: `when` names no declared column")
    files = document.get("files") or [f"{name}-*.csv", f"{name}-*.csv.gz"]
    return CsvMapping(
        name=name,
        feed=str(document.get("feed") or name),
        description=str(document.get("description") or ""),
        files=tuple(str(f) for f in files),
        key=key,
        columns=columns,
        resources=specs,
    )


_BUILTIN: dict[str, CsvMapping] | None = None


def available_mappings() -> dict[str, CsvMapping]:
    """The mappings shipped with sharedcare, by name (loaded once)."""
    global _BUILTIN
    if _BUILTIN is None:
        folder = resources.files("sharedcare.ingest.csvmap") / "mappings"
        found: dict[str, CsvMapping] = {}
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                mapping = load_mapping(entry.read_bytes(), source=f"mappings/{entry.name}")
                found[mapping.name] = mapping
        _BUILTIN = found
    return _BUILTIN


def get_mapping(name_or_path: str) -> CsvMapping:
    """A shipped mapping by name, or a mapping file by path.

    Raises:
        MappingSpecError: If there is no such mapping, or the file is not a valid mapping.
    """
    builtin = available_mappings()
    if name_or_path in builtin:
        return builtin[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return load_mapping(path.read_bytes(), source=path.name)
    raise MappingSpecError(
        f"no CSV mapping called {name_or_path!r}; use one of {', '.join(sorted(builtin))} "
        "or the path of a mapping .json file"
    )


def mapping_for_file(file_name: str) -> CsvMapping | None:
    """The shipped mapping whose ``files`` patterns match this file name, if any."""
    for mapping in available_mappings().values():
        if mapping.matches(file_name):
            return mapping
    return None
