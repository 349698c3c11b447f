"""SQL dialects: how each engine spells JSON navigation, lists and unnesting.

The compiler (``compiler.py``) decides *what* to compute; a dialect decides *how* the engine
writes it. In every dialect a FHIRPath collection is a list of JSON values (DuckDB ``JSON[]``,
PostgreSQL ``jsonb`` array) and a singleton is a JSON value, NULL meaning empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sharedcare.analytics.views.errors import RUNTIME_ERROR_PREFIX, ViewDefinitionError

if TYPE_CHECKING:
    from sharedcare.analytics.views.expressions import ExpressionCompiler, Val

#: A navigation step: (JSON key, repeats?) where None means "unknown cardinality".
Step = tuple[str, bool | None]

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Literal texts for ``DuckDBDialect.written_twin`` (DuckDB string literals have no escapes).
_TWO_BACKSLASHES = "\\\\"
_BACKSLASH_ESCAPE = "\\u005c"
_ESCAPED_QUOTE = '\\"'
_QUOTE_ESCAPE = "\\u0022"
_NUMBER = "-?[0-9][-+.0-9eE]*"
_QUOTED_MATCH = '"\\0"'

#: Relative literal reference ``Type/id`` or ``Type/id/_history/vid``
#: (https://hl7.org/fhir/R4/references.html#literal).
REFERENCE_PATTERN = r"^([A-Za-z]+/[A-Za-z0-9.-]{1,64})(/_history/[A-Za-z0-9.-]{1,64})?$"


@dataclass(frozen=True)
class Source:
    """Where resources come from.

    Attributes:
        relation: SQL relation (table name, view, or parenthesised subquery / table function).
        json_column: column holding the resource JSON (DuckDB JSON / PostgreSQL jsonb).
        type_column: optional column holding the resource type, used for filtering when present.
        text_column: optional column holding each resource's original JSON text. Engines whose
            JSON type drops a decimal's written precision (Spark's VARIANT turns ``1.50`` into
            ``1.5``) read decimal ``lowBoundary()``/``highBoundary()`` inputs from it.
    """

    relation: str
    json_column: str = "resource"
    type_column: str | None = None
    text_column: str | None = None


class Dialect:
    """Base class; subclasses implement every method for one engine."""

    name = "base"
    #: SQL type of a single JSON value.
    json_sql_type = "JSON"
    #: Whether JSON numbers keep their written scale (1.50 vs 1.5), needed by decimal
    #: boundaries. Dialects where they do not read those inputs from a *written twin* of the
    #: resource instead: the same JSON with every number turned into a string of its literal
    #: text (``written_number_text``).
    keeps_decimal_scale = True

    def __init__(self) -> None:
        #: SQL of a JSON focus -> SQL of the same node in the written twin. The compiler maps
        #: the resource root and each forEach item whose list is a plain path.
        self.written: dict[str, str] = {}
        #: Whether any expression read the twin (so the query must compute it).
        self.written_used = False

    def quote_ident(self, name: str) -> str:
        """Double-quote an identifier."""
        return '"' + name.replace('"', '""') + '"'

    def string(self, value: str) -> str:
        """A SQL string literal."""
        return "'" + value.replace("'", "''") + "'"

    def literal(self, value: str | int | float | bool | None, system: str) -> str:
        """A SQL literal of a FHIRPath system type."""
        if value is None:
            return "NULL"
        if system == "boolean":
            return "TRUE" if value else "FALSE"
        if system == "integer":
            return f"CAST({int(value)} AS BIGINT)"
        if system == "decimal":
            return f"CAST({float(value)!r} AS {self.sql_type('decimal')})"
        return self.string(str(value))

    def sql_type(self, system: str) -> str:
        """SQL type for a FHIRPath system type."""
        return {
            "boolean": "BOOLEAN",
            "integer": "BIGINT",
            "decimal": "DOUBLE PRECISION",
        }.get(system, "VARCHAR")

    def error_message(self, message: str) -> str:
        """Prefix a runtime error so runners recognise it as data-free."""
        return RUNTIME_ERROR_PREFIX + message

    # --- abstract-ish API -------------------------------------------------------------------
    def path_one(self, base: str, steps: tuple[Step, ...]) -> str:
        """JSON value at a path with no repeating steps (NULL if absent)."""
        raise NotImplementedError

    def path_many(self, base: str, steps: tuple[Step, ...]) -> str:
        """List of JSON values at a path whose steps all have known cardinality."""
        raise NotImplementedError

    def path_text_one(self, base: str, steps: tuple[Step, ...]) -> str:
        """Text of the JSON primitive at a non-repeating path."""
        raise NotImplementedError

    def json_to_scalar(self, value: str, system: str) -> str:
        """Convert a JSON primitive to a native SQL scalar of ``system`` type."""
        raise NotImplementedError

    def scalar_to_json(self, value: str) -> str:
        """Convert a native scalar to JSON."""
        raise NotImplementedError

    def empty_list(self) -> str:
        """The empty list."""
        raise NotImplementedError

    def list_of_one(self, value: str) -> str:
        """List holding the JSON value, or empty when the value is NULL."""
        raise NotImplementedError

    def list_len(self, lst: str) -> str:
        """Number of items in a list."""
        raise NotImplementedError

    def list_get(self, lst: str, index0: str) -> str:
        """Item at 0-based index (NULL when out of range)."""
        raise NotImplementedError

    def list_concat(self, lists: list[str]) -> str:
        """Concatenate lists in order."""
        raise NotImplementedError

    def list_distinct(self, lst: str) -> str:
        """Remove duplicate items (FHIRPath union)."""
        raise NotImplementedError

    def lambda_ref(self, var: str) -> str:
        """How an expression refers to the current item bound to ``var``."""
        raise NotImplementedError

    def list_filter(self, lst: str, var: str, cond: str) -> str:
        """Items for which ``cond`` (written against ``lambda_ref(var)``) is TRUE."""
        raise NotImplementedError

    def list_map(self, lst: str, var: str, value_json: str) -> str:
        """Map each item to a JSON value, dropping NULLs."""
        raise NotImplementedError

    def list_member(self, lst: str, key: str, many: bool | None) -> str:
        """Navigate ``key`` from every item, flattening the results."""
        raise NotImplementedError

    def list_to_output(self, lst: str, system: str) -> str:
        """A collection column: the list converted to the engine's array of scalars."""
        raise NotImplementedError

    def string_join(self, lst: str, sep: str) -> str:
        """Join the string items of a list with the separator (empty list -> '')."""
        raise NotImplementedError

    def raise_error(self, message: str, guard: str, sql_type: str) -> str:
        """Expression that fails at run time with ``message`` when evaluated.

        ``guard`` is a row-dependent expression used so the engine cannot fold the error into
        a planning-time failure; its value never appears in the message.
        """
        raise NotImplementedError

    def reference_key(self, text: str, type_name: str | None) -> str:
        """Resource key (``Type/id``) of a reference string, or NULL."""
        raise NotImplementedError

    def unnest(self, lst: str, alias: str, or_null: bool) -> str:
        """Join clause unnesting a list into ``alias``(e, i) with 1-based ordinal ``i``."""
        raise NotImplementedError

    def int_list(self, items: list[str]) -> str:
        """An integer list/array literal (sort keys for repeat)."""
        raise NotImplementedError

    def list_unnest_select(self, lst: str, alias: str) -> str:
        """FROM item unnesting a list into ``alias``(e, i)."""
        raise NotImplementedError

    def concat(self, parts: list[str]) -> str:
        """String concatenation (NULL if any part is NULL)."""
        return "(" + " || ".join(parts) + ")"

    def begin(self, root: str, alias: str) -> None:
        """Called before a view's expressions are compiled against ``root``."""

    def wrap_source(self, source: Source, filters: list[str]) -> tuple[str, list[str]]:
        """The FROM relation for ``source`` and the ``filters`` still to apply to it.

        Called once all expressions are compiled; ``filters`` (written against the alias
        ``_res``) select the view's resources.
        """
        return source.relation, filters

    def bind(self, value: str, var: str, body: Callable[[str], str]) -> str:
        """Evaluate ``value`` once and use it (as ``var``) several times in ``body``.

        The default simply repeats ``value``; dialects with lambdas bind it instead.
        """
        return body(value)

    def strpos(self, text: str, sub: str) -> str:
        """1-based position of ``sub`` in ``text`` (0 when absent)."""
        return f"strpos({text}, {sub})"

    def int_div(self, a: str, b: str) -> str:
        """FHIRPath ``div``: integer division truncating toward zero (NULL on division by 0)."""
        return f"CAST(trunc(CAST({a} AS DOUBLE PRECISION) / nullif({b}, 0)) AS BIGINT)"

    def last_day_of_month(self, date_text: str) -> str:
        """'YYYY-MM-DD' text of the last day of the month of a 'YYYY-MM-DD' text."""
        raise NotImplementedError

    def round_double(self, value: str, digits: str) -> str:
        """Round a double to ``digits`` decimal places."""
        raise NotImplementedError

    def written_number_text(
        self, x: ExpressionCompiler, target: Val, what: str, function: str
    ) -> str:
        """SQL text of the number ``target`` exactly as written in the resource JSON.

        Only dialects with ``keeps_decimal_scale = False`` use this (for decimal boundaries,
        https://build.fhir.org/fhirpath.html#functions): ``target`` is read at the same path in
        the written twin of its base.

        Raises:
            ViewDefinitionError: if ``target`` has no twin (see ``written_hint``).
        """
        twin = self.written.get(target.sql) if target.kind == "path" else None
        if twin is None:
            raise ViewDefinitionError(
                f"{function}() on a decimal needs the number as written, which the {self.name} "
                f"engine's JSON type does not keep (1.50 reads back as 1.5): "
                f"{self.written_hint()}; or run the view on PostgreSQL"
            )
        self.written_used = True
        return self.json_to_scalar(x.to_one(replace(target, sql=twin), what), "string")

    def written_hint(self) -> str:
        """How to make a decimal boundary input readable from the written twin."""
        return (
            "apply it to a path from the resource, or from a forEach/forEachOrNull whose "
            "expression is itself a path"
        )


def _json_path(steps: tuple[Step, ...], wildcard: bool, root: str = "$") -> str:
    out = root
    for key, many in steps:
        if key.startswith("["):
            out += key
            continue
        out += "." + (key if _SIMPLE_KEY.match(key) else '"' + key.replace('"', '\\"') + '"')
        if many and wildcard:
            out += "[*]"
    return out


class DuckDBDialect(Dialect):
    """DuckDB (https://duckdb.org/docs/data/json/json_functions) over a JSON column.

    Paths read from the resource root are *hoisted*: the source is wrapped so that one
    multi-path ``json_extract``/``json_extract_string`` call per resource parses the document
    once for all of them, instead of once per column (about 4x faster for a typical view).
    Wildcard paths hoist their prefix up to the first repeating element.
    """

    name = "duckdb"
    # DuckDB's JSON functions re-print numbers (1.50 -> 1.5, 0.000 -> 0.0).
    keeps_decimal_scale = False

    def __init__(self) -> None:
        super().__init__()
        self._root: str | None = None
        self._alias = ""
        self._json_paths: list[str] = []
        self._text_paths: list[str] = []

    def begin(self, root: str, alias: str) -> None:
        """Start hoisting paths read from ``root`` (the resource column of ``alias``)."""
        self._root, self._alias = root, alias
        self._json_paths, self._text_paths = [], []
        self.written = {root: f"{alias}._sof_wt"}
        self.written_used = False

    def wrap_source(self, source: Source, filters: list[str]) -> tuple[str, list[str]]:
        """The source, filtered first and then extended with the hoisted path columns."""
        if not (self._json_paths or self._text_paths or self.written_used):
            return source.relation, filters
        col = self.quote_ident(source.json_column)
        extra = []
        if self.written_used:
            extra.append(f"{self.written_twin(f'CAST({col} AS VARCHAR)')} AS _sof_wt")
        for name, fn, paths in (
            ("_sof_pj", "json_extract", self._json_paths),
            ("_sof_pt", "json_extract_string", self._text_paths),
        ):
            if paths:
                listed = ", ".join(self.string(p) for p in paths)
                extra.append(f"{fn}({col}, [{listed}]) AS {name}")
        where = " AND ".join(f"coalesce({f}, FALSE)" for f in filters) or "TRUE"
        inner = f"(SELECT * FROM {source.relation} AS _res WHERE {where})"
        return f"(SELECT *, {', '.join(extra)} FROM {inner})", []

    def written_twin(self, text: str) -> str:
        """JSON of the JSON text ``text`` with every number replaced by its literal text.

        The escapes ``\\\\`` and ``\\"`` are first rewritten as the equivalent ``\\u005c`` and
        ``\\u0022``, so every ``"`` left delimits a string; splitting on ``"`` then leaves the
        text outside strings in the odd-numbered (1-based) pieces, where numbers are quoted.
        """
        lit = self.string
        text = f"replace(replace({text}, {lit(_TWO_BACKSLASHES)}, {lit(_BACKSLASH_ESCAPE)}), "
        text += f"{lit(_ESCAPED_QUOTE)}, {lit(_QUOTE_ESCAPE)})"
        quoted = f"regexp_replace(_s, {lit(_NUMBER)}, {lit(_QUOTED_MATCH)}, 'g')"
        pieces = (
            f"list_transform(string_split({text}, '\"'), "
            f"lambda _s, _k: CASE WHEN _k % 2 = 1 THEN {quoted} ELSE _s END)"
        )
        return f"json(array_to_string({pieces}, '\"'))"

    def _hoisted(self, paths: list[str], column: str, path: str) -> str:
        if path not in paths:
            paths.append(path)
        return f"{self._alias}.{column}[{paths.index(path) + 1}]"

    def path_one(self, base: str, steps: tuple[Step, ...]) -> str:
        if not steps:
            return base
        path = _json_path(steps, False)
        if base == self._root:
            return self._hoisted(self._json_paths, "_sof_pj", path)
        return f"json_extract({base}, {self.string(path)})"

    def path_many(self, base: str, steps: tuple[Step, ...]) -> str:
        if base == self._root:
            first = next((n for n, (_, many) in enumerate(steps) if many), None)
            if first is not None:
                prefix = self._hoisted(
                    self._json_paths, "_sof_pj", _json_path(steps[: first + 1], False)
                )
                rest = _json_path(steps[first + 1 :], True, root="$[*]")
                found = f"json_extract({prefix}, {self.string(rest)})"
                return f"coalesce({found}, {self.empty_list()})"
        found = f"json_extract({base}, {self.string(_json_path(steps, True))})"
        return f"coalesce({found}, {self.empty_list()})"

    def path_text_one(self, base: str, steps: tuple[Step, ...]) -> str:
        path = _json_path(steps, False)
        if base == self._root:
            return self._hoisted(self._text_paths, "_sof_pt", path)
        return f"json_extract_string({base}, {self.string(path)})"

    def json_to_scalar(self, value: str, system: str) -> str:
        if system in ("boolean", "integer", "decimal"):
            return f"CAST({value} AS {self.sql_type(system)})"
        return f"json_extract_string({value}, '$')"

    def scalar_to_json(self, value: str) -> str:
        return f"to_json({value})"

    def empty_list(self) -> str:
        return "CAST([] AS JSON[])"

    def list_of_one(self, value: str) -> str:
        return f"list_filter([{value}], lambda _z: _z IS NOT NULL)"

    def list_len(self, lst: str) -> str:
        return f"len({lst})"

    def list_get(self, lst: str, index0: str) -> str:
        return f"({lst})[({index0}) + 1]"

    def list_concat(self, lists: list[str]) -> str:
        out = lists[0]
        for other in lists[1:]:
            out = f"list_concat({out}, {other})"
        return out

    def list_distinct(self, lst: str) -> str:
        return (
            f"list_transform(list_distinct(list_transform({lst}, lambda _d: _d::VARCHAR)), "
            "lambda _d: _d::JSON)"
        )

    def lambda_ref(self, var: str) -> str:
        return var

    def list_filter(self, lst: str, var: str, cond: str) -> str:
        return f"list_filter({lst}, lambda {var}: coalesce({cond}, FALSE))"

    def list_map(self, lst: str, var: str, value_json: str) -> str:
        return (
            f"list_filter(list_transform({lst}, lambda {var}: {value_json}), "
            "lambda _m: _m IS NOT NULL)"
        )

    def list_member(self, lst: str, key: str, many: bool | None) -> str:
        path = _json_path(((key, many),), True)
        if many:
            lit = self.string(path)
            return f"flatten(list_transform({lst}, lambda _v: json_extract(_v, {lit})))"
        if many is False:
            return (
                f"list_filter(list_transform({lst}, lambda _v: json_extract(_v, "
                f"{self.string(path)})), lambda _w: _w IS NOT NULL)"
            )
        one = self.string(_json_path(((key, False),), False))
        arr = self.string(_json_path(((key, True),), True))
        return (
            f"flatten(list_transform({lst}, lambda _v: CASE "
            f"WHEN json_type(_v, {one}) = 'ARRAY' THEN json_extract(_v, {arr}) "
            f"WHEN json_type(_v, {one}) IS NULL OR json_type(_v, {one}) = 'NULL' "
            f"THEN CAST([] AS JSON[]) ELSE [json_extract(_v, {one})] END))"
        )

    def list_to_output(self, lst: str, system: str) -> str:
        return f"list_transform({lst}, lambda _o: {self.json_to_scalar('_o', system)})"

    def string_join(self, lst: str, sep: str) -> str:
        return (
            f"coalesce(array_to_string(list_transform({lst}, lambda _s: "
            f"json_extract_string(_s, '$')), {sep}), '')"
        )

    def raise_error(self, message: str, guard: str, sql_type: str) -> str:
        return f"CAST(error({self.string(self.error_message(message))}) AS {sql_type})"

    def reference_key(self, text: str, type_name: str | None) -> str:
        pattern = REFERENCE_PATTERN
        if type_name is not None:
            pattern = pattern.replace("[A-Za-z]+/", re.escape(type_name) + "/", 1)
        return f"nullif(regexp_extract({text}, {self.string(pattern)}, 1), '')"

    def unnest(self, lst: str, alias: str, or_null: bool) -> str:
        join = "LEFT JOIN" if or_null else "CROSS JOIN"
        on = " ON TRUE" if or_null else ""
        return f"{join} LATERAL unnest({lst}) WITH ORDINALITY AS {alias}(e, i){on}"

    def list_unnest_select(self, lst: str, alias: str) -> str:
        return f"unnest({lst}) WITH ORDINALITY AS {alias}(e, i)"

    def int_list(self, items: list[str]) -> str:
        return "[" + ", ".join(f"CAST({x} AS BIGINT)" for x in items) + "]"

    def bind(self, value: str, var: str, body: Callable[[str], str]) -> str:
        return f"list_transform([{value}], lambda {var}: {body(var)})[1]"

    def last_day_of_month(self, date_text: str) -> str:
        return f"strftime(last_day(CAST({date_text} AS DATE)), '%Y-%m-%d')"

    def round_double(self, value: str, digits: str) -> str:
        return f"round({value}, CAST({digits} AS INTEGER))"


class PostgresDialect(Dialect):
    """PostgreSQL 15 over a ``jsonb`` column (https://www.postgresql.org/docs/15/functions-json.html)."""

    name = "postgres"
    json_sql_type = "jsonb"

    def sql_type(self, system: str) -> str:
        return {
            "boolean": "BOOLEAN",
            "integer": "BIGINT",
            "decimal": "DOUBLE PRECISION",
        }.get(system, "TEXT")

    def _pg_path(self, steps: tuple[Step, ...]) -> str:
        parts = [k[1:-1] if k.startswith("[") else k for k, _ in steps]
        return "{" + ",".join('"' + k.replace('"', '\\"') + '"' for k in parts) + "}"

    def path_one(self, base: str, steps: tuple[Step, ...]) -> str:
        if not steps:
            return base
        return f"({base} #> {self.string(self._pg_path(steps))})"

    def path_many(self, base: str, steps: tuple[Step, ...]) -> str:
        flags = [
            not k.startswith("[") and not (n + 1 < len(steps) and steps[n + 1][0].startswith("["))
            for n, (k, _) in enumerate(steps)
        ]
        path = "lax " + _json_path(tuple(zip((k for k, _ in steps), flags, strict=True)), True)
        found = f"jsonb_path_query_array({base}, {self.string(path)})"
        return f"coalesce({found}, {self.empty_list()})"

    def path_text_one(self, base: str, steps: tuple[Step, ...]) -> str:
        return f"({base} #>> {self.string(self._pg_path(steps))})"

    def json_to_scalar(self, value: str, system: str) -> str:
        if system == "boolean":
            return f"CAST({value} AS BOOLEAN)"
        if system in ("integer", "decimal"):
            return f"CAST(CAST({value} AS NUMERIC) AS {self.sql_type(system)})"
        return f"({value} #>> '{{}}')"

    def scalar_to_json(self, value: str) -> str:
        return f"to_jsonb({value})"

    def empty_list(self) -> str:
        return "CAST('[]' AS jsonb)"

    def list_of_one(self, value: str) -> str:
        return f"coalesce(jsonb_path_query_array({value}, 'lax $'), {self.empty_list()})"

    def list_len(self, lst: str) -> str:
        return f"jsonb_array_length({lst})"

    def list_get(self, lst: str, index0: str) -> str:
        return f"(({lst}) -> CAST({index0} AS INTEGER))"

    def list_concat(self, lists: list[str]) -> str:
        return "(" + " || ".join(f"({x})" for x in lists) + ")"

    def list_distinct(self, lst: str) -> str:
        return (
            "(SELECT coalesce(jsonb_agg(d.value ORDER BY d.o), '[]'::jsonb) FROM "
            "(SELECT DISTINCT ON (x.value) x.value, x.ordinality AS o FROM "
            f"jsonb_array_elements({lst}) WITH ORDINALITY AS x ORDER BY x.value, x.ordinality) d)"
        )

    def lambda_ref(self, var: str) -> str:
        return f"{var}.value"

    def list_filter(self, lst: str, var: str, cond: str) -> str:
        return (
            f"(SELECT coalesce(jsonb_agg({var}.value ORDER BY {var}.ordinality), '[]'::jsonb) "
            f"FROM jsonb_array_elements({lst}) WITH ORDINALITY AS {var} WHERE {cond})"
        )

    def list_map(self, lst: str, var: str, value_json: str) -> str:
        return (
            f"(SELECT coalesce(jsonb_agg(_m.v ORDER BY _m.o), '[]'::jsonb) FROM "
            f"(SELECT {value_json} AS v, {var}.ordinality AS o FROM "
            f"jsonb_array_elements({lst}) WITH ORDINALITY AS {var}) _m WHERE _m.v IS NOT NULL)"
        )

    def list_member(self, lst: str, key: str, many: bool | None) -> str:
        path = "lax " + _json_path(((key, True),), True, root="$[*]")
        return f"jsonb_path_query_array({lst}, {self.string(path)})"

    def list_to_output(self, lst: str, system: str) -> str:
        return lst

    def string_join(self, lst: str, sep: str) -> str:
        return (
            f"coalesce((SELECT string_agg(_s.value #>> '{{}}', {sep} ORDER BY _s.ordinality) "
            f"FROM jsonb_array_elements({lst}) WITH ORDINALITY AS _s), '')"
        )

    def raise_error(self, message: str, guard: str, sql_type: str) -> str:
        # PostgreSQL has no error() function in plain SQL; casting the (row-dependent, hence not
        # constant-folded) message to integer fails with the message text in the error.
        msg = self.string(self.error_message(message))
        guard_text = f"coalesce(left(CAST({guard} AS TEXT), 0), '')"
        failing = f"CAST(({msg} || {guard_text}) AS INTEGER)"
        if sql_type.lower() == "jsonb":
            return f"to_jsonb({failing})"
        return f"CAST({failing} AS {sql_type})"

    def reference_key(self, text: str, type_name: str | None) -> str:
        pattern = REFERENCE_PATTERN
        if type_name is not None:
            pattern = pattern.replace("[A-Za-z]+/", re.escape(type_name) + "/", 1)
        return f"substring({text} from {self.string(pattern)})"

    def unnest(self, lst: str, alias: str, or_null: bool) -> str:
        join = "LEFT JOIN" if or_null else "CROSS JOIN"
        on = " ON TRUE" if or_null else ""
        return f"{join} LATERAL jsonb_array_elements({lst}) WITH ORDINALITY AS {alias}(e, i){on}"

    def list_unnest_select(self, lst: str, alias: str) -> str:
        return f"jsonb_array_elements({lst}) WITH ORDINALITY AS {alias}(e, i)"

    def int_list(self, items: list[str]) -> str:
        return "ARRAY[" + ", ".join(f"CAST({x} AS BIGINT)" for x in items) + "]"

    def last_day_of_month(self, date_text: str) -> str:
        return (
            f"to_char(date_trunc('month', CAST({date_text} AS DATE)) "
            "+ interval '1 month' - interval '1 day', 'YYYY-MM-DD')"
        )

    def round_double(self, value: str, digits: str) -> str:
        rounded = f"round(CAST({value} AS NUMERIC), CAST({digits} AS INTEGER))"
        return f"CAST({rounded} AS DOUBLE PRECISION)"


DIALECTS: dict[str, type[Dialect]] = {"duckdb": DuckDBDialect, "postgres": PostgresDialect}
