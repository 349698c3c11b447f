"""Spark SQL (PySpark 4, optional ``spark`` extra) target for ViewDefinitions.

Resources are Spark ``VARIANT`` values (https://spark.apache.org/docs/latest/sql-ref-datatypes.html).
Spark does not allow correlated subqueries over VARIANT, so instead of LATERAL joins each
``select`` node compiles to an *array of row structs* built with higher-order functions
(``transform``/``filter``/``flatten``/``concat``), which one ``explode`` turns into rows.
``repeat`` uses a recursive CTE keyed by resource; on Spark it is supported where its focus is
the resource itself (not inside ``forEach``).

VARIANT keeps a decimal's value but not its written precision (``1.50`` reads back as ``1.5``),
which decimal ``lowBoundary()``/``highBoundary()`` need
(https://build.fhir.org/fhirpath.html#functions). For views that use them, and sources with a
``text_column`` holding each resource's original JSON, the compiler also parses a *written twin*
of the resource: the same JSON with every number turned into a string of its literal text. A
boundary input read from the resource (or from a ``forEach`` over a path) is read at the same
path and index from the twin. Other views never touch the twin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sharedcare.analytics.views import fhir_types
from sharedcare.analytics.views.compiler import CompiledView, OutputColumn
from sharedcare.analytics.views.dialects import REFERENCE_PATTERN, Dialect, Source, Step
from sharedcare.analytics.views.errors import ViewDefinitionError
from sharedcare.analytics.views.expressions import Ctx, ExpressionCompiler, Val
from sharedcare.analytics.views.model import Column, Select, ViewDefinition

_EMPTY = "CAST(array() AS ARRAY<VARIANT>)"
_NULL = "CAST(NULL AS VARIANT)"
# Java regular expressions / replacements for ``SparkDialect.written_twin``.
_BACKSLASHES = r"[\\][\\]"
_BACKSLASH_ESCAPE = r"\\u005c"
_ESCAPED_QUOTE = r'[\\]"'
_QUOTE_ESCAPE = r"\\u0022"
_NUMBER = "-?[0-9][-+.0-9eE]*"
_QUOTED = '"$0"'


def _vpath(steps: tuple[Step, ...]) -> str:
    out = "$"
    for key, _ in steps:
        out += key if key.startswith("[") else "['" + key.replace("'", "\\'") + "']"
    return out


class SparkDialect(Dialect):
    """Spark SQL 4 over a VARIANT column."""

    name = "spark"
    json_sql_type = "VARIANT"
    keeps_decimal_scale = False

    def __init__(self) -> None:
        super().__init__()
        self.written[_NULL] = _NULL
        #: Column with each resource's JSON text, from which the written twin is parsed.
        self.text_column: str | None = None

    def written_twin(self, text: str) -> str:
        """VARIANT of the JSON text ``text`` with every number replaced by its literal text.

        The escapes ``\\\\`` and ``\\"`` are first rewritten as the equivalent ``\\u005c`` and
        ``\\u0022``, so every ``"`` left delimits a string; splitting on ``"`` then leaves the
        text outside strings in the even-numbered pieces, where the numbers are quoted.
        """
        lit = self.string
        text = f"regexp_replace({text}, {lit(_BACKSLASHES)}, {lit(_BACKSLASH_ESCAPE)})"
        text = f"regexp_replace({text}, {lit(_ESCAPED_QUOTE)}, {lit(_QUOTE_ESCAPE)})"
        quoted = f"regexp_replace(_s, {lit(_NUMBER)}, {lit(_QUOTED)})"
        pieces = f"transform(split({text}, '\"'), (_s, _k) -> IF(_k % 2 = 0, {quoted}, _s))"
        return f"parse_json(array_join({pieces}, '\"'))"

    def written_hint(self) -> str:
        if self.text_column is None:
            return (
                "register the source with load_spark_view or ndjson_spark_view, or give "
                "Source(text_column=...) naming a column with each resource's JSON text"
            )
        return super().written_hint()

    def quote_ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def sql_type(self, system: str) -> str:
        return {"boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE"}.get(
            system, "STRING"
        )

    def _get(self, base: str, steps: tuple[Step, ...], as_type: str | None = None) -> str:
        path = self.string(_vpath(steps))
        if as_type is None:
            return f"variant_get({base}, {path})"
        return f"variant_get({base}, {path}, '{as_type}')"

    def path_one(self, base: str, steps: tuple[Step, ...]) -> str:
        return base if not steps else self._get(base, steps)

    def path_many(self, base: str, steps: tuple[Step, ...]) -> str:
        first = next(n for n, (_, many) in enumerate(steps) if many)
        lst = f"coalesce({self._get(base, steps[: first + 1], 'array<variant>')}, {_EMPTY})"
        for key, many in steps[first + 1 :]:
            lst = self.list_member(lst, key, many)
        return lst

    def path_text_one(self, base: str, steps: tuple[Step, ...]) -> str:
        return self._get(base, steps, "string")

    def json_to_scalar(self, value: str, system: str) -> str:
        return f"variant_get({value}, '$', '{self.sql_type(system).lower()}')"

    def scalar_to_json(self, value: str) -> str:
        return f"CAST({value} AS VARIANT)"

    def empty_list(self) -> str:
        return _EMPTY

    def list_of_one(self, value: str) -> str:
        return f"filter(array({value}), _z -> _z IS NOT NULL)"

    def list_len(self, lst: str) -> str:
        return f"size({lst})"

    def list_get(self, lst: str, index0: str) -> str:
        return f"get({lst}, CAST({index0} AS INT))"

    def list_concat(self, lists: list[str]) -> str:
        return "concat(" + ", ".join(lists) + ")"

    def list_distinct(self, lst: str) -> str:
        texts = f"array_distinct(transform({lst}, _d -> to_json(_d)))"
        return f"transform({texts}, _d -> parse_json(_d))"

    def lambda_ref(self, var: str) -> str:
        return var

    def list_filter(self, lst: str, var: str, cond: str) -> str:
        return f"filter({lst}, {var} -> coalesce({cond}, FALSE))"

    def list_map(self, lst: str, var: str, value_json: str) -> str:
        return f"filter(transform({lst}, {var} -> {value_json}), _m -> _m IS NOT NULL)"

    def list_member(self, lst: str, key: str, many: bool | None) -> str:
        step: tuple[Step, ...] = ((key, many),)
        if many:
            arr = self._get("_v", step, "array<variant>")
            return f"flatten(transform({lst}, _v -> coalesce({arr}, {_EMPTY})))"
        if many is False:
            one = self._get("_v", step)
            return f"filter(transform({lst}, _v -> {one}), _w -> _w IS NOT NULL)"
        arr = f"try_variant_get(_v, {self.string(_vpath(step))}, 'array<variant>')"
        one = self._get("_v", step)
        fallback = f"CASE WHEN {one} IS NULL THEN {_EMPTY} ELSE array({one}) END"
        return f"flatten(transform({lst}, _v -> coalesce({arr}, {fallback})))"

    def list_to_output(self, lst: str, system: str) -> str:
        return f"transform({lst}, _o -> {self.json_to_scalar('_o', system)})"

    def string_join(self, lst: str, sep: str) -> str:
        items = f"transform({lst}, _s -> variant_get(_s, '$', 'string'))"
        return f"coalesce(array_join({items}, {sep}), '')"

    def raise_error(self, message: str, guard: str, sql_type: str) -> str:
        return f"CAST(raise_error({self.string(self.error_message(message))}) AS {sql_type})"

    def reference_key(self, text: str, type_name: str | None) -> str:
        pattern = REFERENCE_PATTERN
        if type_name is not None:
            pattern = pattern.replace("[A-Za-z]+/", re.escape(type_name) + "/", 1)
        return f"nullif(regexp_extract({text}, {self.string(pattern)}, 1), '')"

    def bind(self, value: str, var: str, body: Callable[[str], str]) -> str:
        return f"get(transform(array({value}), {var} -> {body(var)}), 0)"

    def strpos(self, text: str, sub: str) -> str:
        return f"instr({text}, {sub})"

    def int_div(self, a: str, b: str) -> str:
        return f"CAST(CAST({a} AS DOUBLE) / nullif({b}, 0) AS BIGINT)"

    def last_day_of_month(self, date_text: str) -> str:
        return f"date_format(last_day(to_date({date_text})), 'yyyy-MM-dd')"

    def round_double(self, value: str, digits: str) -> str:
        # Spark's round() needs a constant scale; scale by 10^digits around a whole-number round.
        scale = f"power(10, {digits})"
        return f"(round({value} * {scale}) / {scale})"

    def concat(self, parts: list[str]) -> str:
        return "concat(" + ", ".join(parts) + ")"


class _SparkViewCompiler:
    """Builds ``ARRAY<STRUCT<columns>>`` expressions for select nodes."""

    def __init__(self, view: ViewDefinition) -> None:
        self.view = view
        self.d = SparkDialect()
        self.x = ExpressionCompiler(self.d, view.constants)
        self.columns: dict[str, OutputColumn] = {}
        self.ctes: list[str] = []
        self.joins: list[str] = []

    def column_sql(self, column: Column, ctx: Ctx) -> str:
        value = self.x.compile(column.path.ast, ctx)
        declared = fhir_types.system_type(column.type) if column.type else None
        system = declared or (value.sys if column.type is None else None) or "json"
        self.columns.setdefault(column.name, OutputColumn(column.name, system, column.collection))
        what = f"column '{column.name}' ({column.path.location})"
        out = "string" if system == "json" else system
        if column.collection:
            return self.d.list_to_output(self.x.to_list(value), out)
        if system == "json":
            return self.d.json_to_scalar(self.x.to_one(value, what), "string")
        sql, got = self.x.to_scalar(value, what, system)
        return sql if got == system else f"CAST({sql} AS {self.d.sql_type(system)})"

    def product(
        self, left: tuple[str, list[str]], right: tuple[str, list[str]]
    ) -> tuple[str, list[str]]:
        (a, a_names), (b, b_names) = left, right
        va, vb = self.x.fresh("_pa"), self.x.fresh("_pb")
        fields = [f"'{n}', {va}.{self.d.quote_ident(n)}" for n in a_names]
        fields += [f"'{n}', {vb}.{self.d.quote_ident(n)}" for n in b_names]
        inner = f"transform({b}, {vb} -> named_struct({', '.join(fields)}))"
        return f"flatten(transform({a}, {va} -> {inner}))", a_names + b_names

    def body(self, node: Select, ctx: Ctx) -> tuple[str, list[str]]:
        """Rows of ``node`` for one focus, without its own iteration."""
        parts: list[tuple[str, list[str]]] = []
        if node.columns:
            fields = ", ".join(f"'{c.name}', {self.column_sql(c, ctx)}" for c in node.columns)
            parts.append((f"array(named_struct({fields}))", [c.name for c in node.columns]))
        parts.extend(self.rows(child, ctx) for child in node.select)
        if node.union_all:
            branches = [self.rows(b, ctx) for b in node.union_all]
            names = branches[0][1]
            parts.append((f"concat({', '.join(b for b, _ in branches)})", names))
        result = parts[0]
        for part in parts[1:]:
            result = self.product(result, part)
        return result

    def rows(self, node: Select, ctx: Ctx) -> tuple[str, list[str]]:
        """``ARRAY<STRUCT>`` expression with the rows of ``node`` for the focus in ``ctx``."""
        if node.for_each is None and node.repeat is None:
            return self.body(node, ctx)
        if node.repeat is not None:
            lst, ftype = self.repeat_list(node, ctx)
        else:
            assert node.for_each is not None
            value = self.x.compile(node.for_each.ast, ctx)
            lst, ftype = self.x.to_list(value), value.ftype
        e, i = self.x.fresh("_e"), self.x.fresh("_i")
        if node.repeat is None and value.kind == "path" and value.sql in self.d.written:
            twin = self.x.to_list(replace(value, sql=self.d.written[value.sql]))
            self.d.written[e] = self.d.list_get(twin, i)
        inner = Ctx(Val("path", e, (), False, ftype), f"CAST({i} AS BIGINT)", ctx.root)
        body, names = self.body(node, inner)
        each = f"flatten(transform({lst}, ({e}, {i}) -> {body}))"
        if not node.or_null:
            return each, names
        null_ctx = Ctx(Val("path", _NULL, (), False, ftype), "0", ctx.root)
        null_body, _ = self.body(node, null_ctx)
        return f"(CASE WHEN size({lst}) = 0 THEN {null_body} ELSE {each} END)", names

    def repeat_list(self, node: Select, ctx: Ctx) -> tuple[str, str | None]:
        assert node.repeat is not None
        if not ctx.focus.is_root:
            raise ViewDefinitionError(
                f"{node.location}.repeat: on Spark, repeat is supported only where its focus is "
                "the resource (not inside forEach or repeat); run this view on DuckDB or PostgreSQL"
            )
        first = [self.x.compile(p.ast, ctx) for p in node.repeat]
        types = {v.ftype for v in first}
        ftype = types.pop() if len(types) == 1 else None
        again = [
            self.x.compile(p.ast, Ctx(Val("path", "_rr.e", (), False, ftype), "0", ctx.root))
            for p in node.repeat
        ]

        def tagged(values: list[Val]) -> str:
            parts = [
                f"transform({self.x.to_list(v)}, (_t, _n) -> named_struct('p', {n}, "
                f"'i', _n, 'e', _t))"
                for n, v in enumerate(values)
            ]
            return f"concat({', '.join(parts)})" if len(parts) > 1 else parts[0]

        name = self.x.fresh("_rep")
        root = ctx.root.sql
        self.ctes.append(
            f"{name}_r (rkey, e, k) AS ("
            f"SELECT to_json({root}), _x.s.e, array(_x.s.p, _x.s.i) FROM _base AS _res "
            f"LATERAL VIEW explode({tagged(first)}) _x AS s "
            f"UNION ALL SELECT _rr.rkey, _y.s.e, concat(_rr.k, array(_y.s.p, _y.s.i)) "
            f"FROM {name}_r AS _rr LATERAL VIEW explode({tagged(again)}) _y AS s), "
            f"{name} AS (SELECT rkey, transform(array_sort(collect_list(struct(k, j))), "
            f"_q -> parse_json(_q.j)) AS items FROM (SELECT DISTINCT rkey, k, to_json(e) AS j "
            f"FROM {name}_r) GROUP BY rkey)"
        )
        self.joins.append(f"LEFT JOIN {name} ON {name}.rkey = to_json({root})")
        return f"coalesce({name}.items, {_EMPTY})", ftype

    def compile(self, source: Source) -> CompiledView:
        d = self.d
        if source.text_column is not None:
            d.text_column = source.text_column
            d.written.update({"_res._v": "_res._vt", "_v": "_vt"})
        root = Val("path", "_res._v", (), False, self.view.resource, is_root=True)
        ctx = Ctx(root, "0", root)
        rows, names = self.rows(self.view.root, ctx)
        conds = [f"{d.quote_ident(source.json_column)} IS NOT NULL"]
        if source.type_column is not None:
            conds.append(f"{d.quote_ident(source.type_column)} = {d.string(self.view.resource)}")
        else:
            rt = d.path_text_one(f"{d.quote_ident(source.json_column)}", (("resourceType", False),))
            conds.append(f"{rt} = {d.string(self.view.resource)}")
        where_ctx = Ctx(Val("path", "_v", (), False, self.view.resource, is_root=True), "0", root)
        for w in self.view.where:
            where_ctx_root = Ctx(where_ctx.focus, "0", where_ctx.focus)
            conds.append(self.x.to_bool(self.x.compile(w.ast, where_ctx_root), w.location))
        twin = ""
        if d.written_used and d.text_column is not None:
            twin = f"{d.written_twin(d.quote_ident(d.text_column))} AS _vt, "
        base = (
            f"_base AS (SELECT * FROM (SELECT {d.quote_ident(source.json_column)} AS _v, {twin}* "
            f"FROM {source.relation}) WHERE "
            + " AND ".join(f"coalesce({c}, FALSE)" for c in conds)
            + ")"
        )
        ctes = ", ".join([base, *self.ctes])
        recursive = "RECURSIVE " if self.ctes else ""
        select = ", ".join(f"_row.{d.quote_ident(n)} AS {d.quote_ident(n)}" for n in names)
        sql = (
            f"WITH {recursive}{ctes} SELECT {select} FROM (SELECT explode({rows}) AS _row "
            f"FROM _base AS _res {' '.join(self.joins)})"
        )
        return CompiledView(sql, tuple(self.columns[n] for n in self.view.column_names()))


def compile_view_spark(view: ViewDefinition, source: Source) -> CompiledView:
    """Compile a validated view to Spark SQL over ``source`` (a table/view with VARIANT JSON)."""
    return _SparkViewCompiler(view).compile(source)


def load_spark_view(spark: Any, name: str, resources: list[dict[str, Any]]) -> Source:
    """Register a temporary Spark view ``name(resource VARIANT, resource_text STRING)``.

    ``resource_text`` is the JSON text ``resource`` was parsed from; only views with decimal
    ``lowBoundary()``/``highBoundary()`` read it (Spark prunes it from all others).
    """
    import orjson

    texts = [(orjson.dumps(r).decode(),) for r in resources]
    frame = spark.createDataFrame(texts, "text STRING")
    frame = frame.selectExpr("parse_json(text) AS resource", "text AS resource_text")
    frame.createOrReplaceTempView(name)
    return Source(name, "resource", text_column="resource_text")


def ndjson_spark_view(spark: Any, name: str, path: str) -> Source:
    """Register a temporary Spark view over NDJSON file(s), one resource per line.

    Columns as for ``load_spark_view``: ``resource`` (VARIANT) and ``resource_text`` (the line).
    """
    frame = spark.read.text(path).where("trim(value) <> ''")
    frame = frame.selectExpr("parse_json(value) AS resource", "value AS resource_text")
    frame.createOrReplaceTempView(name)
    return Source(name, "resource", text_column="resource_text")


def run_spark(spark: Any, view: ViewDefinition | dict[str, Any], source: Source) -> Any:
    """Evaluate a view with Spark SQL and collect the rows (small results; see ``spark.sql``)."""
    from sharedcare.analytics.views.runner import ViewResult, as_view, translate_error

    compiled = compile_view_spark(as_view(view), source)
    try:
        rows = spark.sql(compiled.sql).collect()
    except Exception as exc:  # pyspark raises many unrelated exception classes
        raise translate_error("spark", exc) from exc
    return ViewResult(tuple(c.name for c in compiled.columns), [tuple(r) for r in rows])
