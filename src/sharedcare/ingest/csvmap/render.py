"""Map one CSV row to FHIR R4 resources with a :class:`~.spec.CsvMapping`.

Cells are typed by their column's declaration (dates become FHIR ``date``, local times
become ``dateTime`` with their UTC offset as R4 requires, NHS numbers become Identifiers),
then each resource template is filled in. Any problem raises :class:`CsvRowError` naming
the column and what was expected, never the cell's value.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM, is_valid, normalise
from sharedcare.ingest.csvmap.spec import ColumnSpec, CsvMapping
from sharedcare.ingest.hl7v2.mapping.context import ID_NAMESPACE as HL7V2_NAMESPACE
from sharedcare.ingest.store import looks_like_ods_code

__all__ = ["CSV_NAMESPACE", "CsvRowError", "MappedRow", "map_row", "row_key"]

CSV_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sharedcare:ingest:csv")
"""Namespace of the UUID v5 ids of resources mapped from CSV rows."""

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_EMPTY: Any = object()


class CsvRowError(ValueError):
    """A row that cannot be mapped. ``reason`` names the column, never the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MappedRow:
    """The resources one row made (those with ``emit: false`` left out)."""

    resources: list[dict[str, Any]]


def _typed(column: ColumnSpec, text: str, org: str) -> Any:
    kind = column.type
    where = f"column {column.name}"
    if column.pattern is not None and not column.pattern.fullmatch(text):
        raise CsvRowError(f"{where}: does not match the pattern {column.pattern.pattern}")
    if kind == "string":
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise CsvRowError(f"{where}: expected a whole number") from None
    if kind == "decimal":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise CsvRowError(f"{where}: expected a decimal number like 12.5") from None
        if not number.is_finite():
            raise CsvRowError(f"{where}: expected a finite decimal number")
        return int(number) if number == number.to_integral_value() else float(number)
    if kind in ("date", "datetime"):
        example = datetime(2024, 1, 31, 13, 5).strftime(column.format)
        try:
            parsed = datetime.strptime(text, column.format)
        except ValueError:
            raise CsvRowError(
                f"{where}: expected a {kind} like {example} (format {column.format})"
            ) from None
        if kind == "date":
            return parsed.date().isoformat()
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(column.timezone))
        return parsed.isoformat(timespec="seconds")
    if kind == "code":
        target = column.values.get(text)
        if target is None:
            raise CsvRowError(
                f"{where}: not one of the {len(column.values)} values the mapping knows; add "
                "it to the column's `values` and replay"
            )
        return {"system": column.system, **target}
    if kind == "ods-code":
        code = text.strip().upper()
        if not looks_like_ods_code(code):
            raise CsvRowError(f"{where}: expected an ODS code like RBD, RBD01 or J81021")
        return code
    # nhs-number
    digits = normalise(text)
    if digits is None:
        raise CsvRowError(f"{where}: expected a 10-digit NHS number")
    if is_valid(digits):
        return {"system": NHS_NUMBER_SYSTEM, "value": digits}
    return {"system": f"urn:sharedcare:csv:{org}:unverified-nhs-number", "value": digits}


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("code") or value.get("value") or "")
    return str(value)


class _Row:
    def __init__(self, mapping: CsvMapping, values: dict[str, Any], org: str) -> None:
        self.mapping = mapping
        self.values = values
        self.org = org
        self.ids: dict[str, str | None] = {}

    def lookup(self, name: str) -> Any:
        if name == "$org":
            return self.org
        if name == "$feed":
            return self.mapping.feed
        if name.startswith("@"):
            found = self.ids.get(name[1:])
            return _EMPTY if found is None else found
        column, _, attribute = name.partition(".")
        value = self.values.get(column)
        if value is None:
            return _EMPTY
        if attribute:
            value = value.get(attribute) if isinstance(value, dict) else None
            return _EMPTY if value is None else value
        return value

    def render(self, node: Any) -> tuple[Any, int, int]:
        """(rendered value or _EMPTY, placeholders seen, placeholders filled)."""
        if isinstance(node, str):
            names = _PLACEHOLDER.findall(node)
            if not names:
                return node, 0, 0
            found = [self.lookup(n) for n in names]
            filled = sum(1 for v in found if v is not _EMPTY)
            if filled < len(found):
                return _EMPTY, len(found), filled
            if len(names) == 1 and node == "{" + names[0] + "}":
                return found[0], 1, 1
            parts = iter(found)
            return _PLACEHOLDER.sub(lambda _: _as_text(next(parts)), node), len(found), filled
        if isinstance(node, list):
            out, seen, filled = [], 0, 0
            for item in node:
                value, s, f = self.render(item)
                seen, filled = seen + s, filled + f
                if value is not _EMPTY:
                    out.append(value)
            return (out if out else _EMPTY), seen, filled
        if isinstance(node, dict):
            if "$if" in node:
                present = self.values.get(str(node["$if"])) is not None
                branch = "then" if present else "else"
                if branch not in node:
                    return _EMPTY, 0, 0
                return self.render(node[branch])
            result: dict[str, Any] = {}
            seen, filled = 0, 0
            for key, child in node.items():
                value, s, f = self.render(child)
                seen, filled = seen + s, filled + f
                if value is not _EMPTY:
                    result[key] = value
            if not result or (seen and not filled):
                return _EMPTY, seen, filled
            return result, seen, filled
        return node, 0, 0

    def key_text(self, parts: tuple[str, ...], where: str) -> list[str]:
        out = []
        for part in parts:
            value, _, _ = self.render(part)
            if value is _EMPTY:
                raise CsvRowError(f"{where}: a column its id is made from is empty")
            out.append(_as_text(value))
        return out


def row_key(mapping: CsvMapping, values: dict[str, str]) -> str | None:
    """The row's key (its ``key`` columns joined by ``|``), or ``None`` if one is empty."""
    parts = [values.get(column, "").strip() for column in mapping.key]
    return "|".join(parts) if all(parts) else None


def map_row(mapping: CsvMapping, header: list[str], cells: list[str], org: str) -> MappedRow:
    """Map one row.

    Args:
        mapping: The feed's mapping.
        header: The file's header line, split.
        cells: The row, split.
        org: The sending organisation's code (``{$org}``).

    Raises:
        CsvRowError: Naming the column at fault and how to fix it.
    """
    header = [h.strip() for h in header]
    missing = [c for c in mapping.required_columns if c not in header]
    if missing:
        raise CsvRowError(
            f"column {', '.join(missing)} missing from the header; the {mapping.name} mapping "
            "requires it"
        )
    if len(cells) != len(header):
        raise CsvRowError(
            f"the row has {len(cells)} cells but the header has {len(header)} columns; check "
            "the quoting of the row"
        )
    raw = dict(zip(header, cells, strict=True))
    values: dict[str, Any] = {}
    for name, column in mapping.columns.items():
        text = (raw.get(name) or "").strip()
        if not text:
            if column.required:
                raise CsvRowError(f"column {name}: required, but empty")
            values[name] = None
            continue
        values[name] = _typed(column, text, org)
    row = _Row(mapping, values, org)
    for spec in mapping.resources:
        if spec.when is not None and values.get(spec.when) is None:
            row.ids[spec.alias] = None
            continue
        where = f"{spec.resource_type} ({spec.alias})"
        if spec.hl7v2_key:
            key = "|".join([spec.resource_type, *row.key_text(spec.hl7v2_key, where)])
            row.ids[spec.alias] = str(uuid.uuid5(HL7V2_NAMESPACE, key))
        else:
            parts = [spec.resource_type, org, *row.key_text(spec.key, where)]
            row.ids[spec.alias] = str(uuid.uuid5(CSV_NAMESPACE, "|".join(parts)))
    resources: list[dict[str, Any]] = []
    for spec in mapping.resources:
        rid = row.ids.get(spec.alias)
        if rid is None or not spec.emit:
            continue
        body, _, _ = row.render(spec.template)
        resource = {"resourceType": spec.resource_type, "id": rid}
        if body is not _EMPTY:
            resource.update(body)
        resources.append(resource)
    return MappedRow(resources)
