"""Pseudonymised row-level extracts: keyed hashes for identifiers, direct identifiers removed.

Rules, decided per view column from its FHIRPath (``rule_for``):

========================================  ===========================================
column                                    published as
========================================  ===========================================
``getResourceKey()``, ``getReferenceKey``  HMAC-SHA256 pseudonym (hex)
``id``, ``identifier`` (NHS number ...)    HMAC-SHA256 pseudonym (hex)
organisation references, ODS codes         unchanged (not about a person)
``birthDate``, ``deceased``                year and month (``YYYY-MM``) or year only
``postalCode``                             postcode district (outward code, ``BH1``)
``name``, ``telecom``, ``photo``,          dropped
``contact``, address ``line``/``text``,
reference ``display``, ``note``, ``text``
anything else                              unchanged
========================================  ===========================================

Keys: one secret *master key* per organisation (``SHAREDCARE_PSEUDONYM_KEY`` or a key file,
at least 32 characters, never logged or stored in outputs). Each project's key is
``HMAC-SHA256(master, "sharedcare-pseudonym-v1" NUL project)``, so the same person gets the
same pseudonym in every extract of one project and unrelated pseudonyms across projects.
The hash runs inside the engine as a textbook HMAC built from SQL ``sha256`` (RFC 2104,
https://www.rfc-editor.org/rfc/rfc2104): the key pads are loaded into a temporary table, so the
key never appears in SQL text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sharedcare.analytics.optout import OptOutQuery

__all__ = [
    "MIN_KEY_LENGTH",
    "PseudonymKeyError",
    "Pseudonymiser",
    "Rule",
    "column_sql",
    "load_key_table",
    "postcode_district",
    "pseudonymised_sql",
    "rule_for",
]

Rule = Literal["keep", "hash", "drop", "month", "year", "district"]
MIN_KEY_LENGTH = 32
KEY_TABLE = "sharedcare_pseudonym_key"
_BLOCK = 64  # SHA-256 block size in bytes
_DISTRICT = r"^([A-Z]{1,2}[0-9][A-Z0-9]?)[0-9][A-Z]{2}$"


class PseudonymKeyError(ValueError):
    """The pseudonymisation key or project name is missing or unusable."""


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed hashing for one project. Build with :meth:`for_project`.

    Attributes:
        project: the project name (not secret).
        dates: how dates of birth and death are generalised (``month`` or ``year``).
    """

    project: str
    dates: Literal["month", "year"] = "month"
    _key: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self._key) < MIN_KEY_LENGTH:
            raise PseudonymKeyError(
                "build a Pseudonymiser with Pseudonymiser.for_project(master_key, project)"
            )

    @classmethod
    def for_project(
        cls, master_key: str, project: str, dates: Literal["month", "year"] = "month"
    ) -> Pseudonymiser:
        """Derive the project key from the master key.

        Raises:
            PseudonymKeyError: the key is shorter than 32 characters or the project is empty.
        """
        if len(master_key) < MIN_KEY_LENGTH:
            raise PseudonymKeyError(
                f"the pseudonymisation key must be at least {MIN_KEY_LENGTH} characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if not project.strip():
            raise PseudonymKeyError("give a project name (--project) for pseudonymised extracts")
        derived = hmac.new(
            master_key.encode(),
            b"sharedcare-pseudonym-v1\0" + project.strip().encode(),
            hashlib.sha256,
        ).digest()
        return cls(project.strip(), dates, derived)

    def pseudonym(self, value: str) -> str:
        """The pseudonym of one identifier value (what the SQL computes, for checking)."""
        return hmac.new(self._key, _canonical(value).encode(), hashlib.sha256).hexdigest()

    def pads(self) -> tuple[bytes, bytes]:
        """HMAC inner and outer key pads (secret: load them with bind parameters only)."""
        key = self._key.ljust(_BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _canonical(value: str) -> str:
    """NHS numbers lose spaces/hyphens so every spelling of one number links."""
    compact = re.sub(r"[\s-]", "", value)
    return compact if re.fullmatch(r"\d{10}", compact) else value


def postcode_district(postcode: str | None) -> str | None:
    """The outward code of a UK postcode (``BH1 1AA`` -> ``BH1``), or None if not a postcode."""
    if postcode is None:
        return None
    match = re.match(_DISTRICT, re.sub(r"\s", "", postcode.upper()))
    return match.group(1) if match else None


_HASH = re.compile(r"getResourceKey\(\)|getReferenceKey\(|(^|\.)identifier\b|^id$|\.id$")
# Keys of organisations and places are not about a person: kept for analysis.
_NOT_PERSON = re.compile(
    r"getReferenceKey\((Organization|Location|HealthcareService|Medication|Endpoint)\)"
)
# Elements that point at organisations, and NHS organisation (ODS) codes: not about a person.
_ORGANISATION = re.compile(
    r"(^|\.)(serviceProvider|managingOrganization|assigner|custodian|organization)\b"
)
_ODS = "https://fhir.nhs.uk/Id/ods-"
_DROP = re.compile(r"(^|[.(])(name|telecom|photo|contact|note|text|line)\b")


def rule_for(
    path: str, *, dates: Literal["month", "year"] = "month", system: str = "string"
) -> Rule:
    """How a view column with this FHIRPath is published in a pseudonymised extract.

    Args:
        path: the column's FHIRPath.
        dates: generalisation of dates of birth and death.
        system: the column's FHIRPath system type (``string``, ``date``, ``boolean`` ...).
    """
    # String literals (system URLs, codes) say nothing about what the column holds.
    compact = re.sub(r"'(?:[^'\\]|\\.)*'", "''", path).replace(" ", "")
    if _NOT_PERSON.search(compact) or _ORGANISATION.search(compact) or _ODS in path:
        return "keep"
    if re.search(r"\.system(\.first\(\))?$", compact):
        return "keep"  # the identifier's namespace URI, not its value
    if _HASH.search(compact):
        return "hash"
    if system in ("date", "dateTime", "string") and (
        "birthDate" in compact or compact.startswith("deceased")
    ):
        return dates
    if compact.endswith("postalCode") or ".postalCode" in compact:
        return "district"
    if re.search(r"(^|\.)display\b", compact) and "coding" not in compact:
        return "drop"
    if _DROP.search(compact):
        return "drop"
    return "keep"


def column_sql(rule: Rule, column: str, engine: str, system: str = "string") -> str | None:
    """SQL publishing ``column`` (already quoted) under ``rule``; None when dropped.

    The HMAC reads the pads from the temporary table ``sharedcare_pseudonym_key`` (see
    ``load_key_table``), cross joined as ``_k``.
    """
    text = column if system == "string" else f"CAST({column} AS {_text(engine)})"
    if rule == "drop":
        return None
    if rule == "keep":
        return column
    if rule in ("month", "year"):
        width = 7 if rule == "month" else 4
        return f"CASE WHEN length({text}) >= {width} THEN substr({text}, 1, {width}) END"
    if rule == "district":
        squashed = f"upper(regexp_replace({text}, '\\s', '', 'g'))"
        if engine == "duckdb":
            return f"nullif(regexp_extract({squashed}, '{_DISTRICT}', 1), '')"
        return f"substring({squashed} from '{_DISTRICT}')"
    canonical = (
        f"CASE WHEN regexp_replace({text}, '[\\s-]', '', 'g') ~ '^[0-9]{{10}}$' "
        f"THEN regexp_replace({text}, '[\\s-]', '', 'g') ELSE {text} END"
        if engine == "postgres"
        else f"CASE WHEN regexp_matches(regexp_replace({text}, '[\\s-]', '', 'g'), "
        f"'^[0-9]{{10}}$') THEN regexp_replace({text}, '[\\s-]', '', 'g') ELSE {text} END"
    )
    if engine == "duckdb":
        inner = f"from_hex(sha256(_k.ipad || encode({canonical})))"
        return f"sha256(_k.opad || {inner})"
    inner = f"sha256(_k.ipad || convert_to({canonical}, 'UTF8'))"
    return f"encode(sha256(_k.opad || {inner}), 'hex')"


def _text(engine: str) -> str:
    return "VARCHAR" if engine == "duckdb" else "TEXT"


def load_key_table(con: Any, engine: str, pseudonymiser: Pseudonymiser) -> None:
    """Create the temporary pads table in a DuckDB connection or psycopg connection."""
    ipad, opad = pseudonymiser.pads()
    if engine == "duckdb":
        con.execute(f"CREATE OR REPLACE TEMPORARY TABLE {KEY_TABLE} (ipad BLOB, opad BLOB)")
        con.execute(f"INSERT INTO {KEY_TABLE} VALUES (?, ?)", [ipad, opad])
        return
    with con.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {KEY_TABLE}")
        cur.execute(f"CREATE TEMPORARY TABLE {KEY_TABLE} (ipad bytea, opad bytea)")
        cur.execute(f"INSERT INTO {KEY_TABLE} VALUES (%s, %s)", (ipad, opad))


def _collection_sql(rule: Rule, column: str, engine: str) -> str | None:
    """Apply a rule to each item of a collection column (an array of text)."""
    if rule in ("keep", "drop"):
        return column if rule == "keep" else None
    item = column_sql(rule, "_i", engine, "string")
    if engine == "duckdb":
        return f"list_transform({column}, lambda _i: {item})"
    item = column_sql(rule, "_i.value", engine, "string")
    return (
        f"(SELECT jsonb_agg({item} ORDER BY _i.ordinality) "
        f"FROM jsonb_array_elements_text({column}) WITH ORDINALITY AS _i)"
    )


def pseudonymised_sql(
    query: OptOutQuery, engine: str, pseudonymiser: Pseudonymiser
) -> tuple[str, tuple[str, ...]]:
    """Wrap a view query so its columns are published under the rules.

    Returns:
        The SQL (it reads the pads table, see :func:`load_key_table`) and the column names
        kept, in order.
    """
    out: list[str] = []
    names: list[str] = []
    for name, system, path, many in zip(
        query.columns, query.systems, query.paths, query.collections, strict=True
    ):
        quoted = '_q."' + name.replace('"', '""') + '"'
        rule = rule_for(path, dates=pseudonymiser.dates, system=system)
        if many:
            sql = _collection_sql(rule, quoted, engine)
        else:
            sql = column_sql(rule, quoted, engine, system)
        if sql is not None:
            out.append(f'{sql} AS "{name}"')
            names.append(name)
    if not out:
        raise PseudonymKeyError(
            "every column of the view is a direct identifier, so the extract would be empty; "
            "add columns that are not"
        )
    sql = f"SELECT {', '.join(out)} FROM ({query.sql}) AS _q CROSS JOIN {KEY_TABLE} AS _k"
    return sql, tuple(names)
