"""Compile a ViewDefinition into one SQL query for a dialect.

Semantics follow https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#processing-algorithm:
each ``select`` node yields rows for its focus; ``forEach``/``forEachOrNull`` unnest with
``LATERAL`` joins, ``repeat`` uses a recursive CTE ordered depth-first, sibling selects are cross
joined, ``unionAll`` branches become ``UNION ALL`` subqueries, and ``%rowIndex`` is the 0-based
position within the nearest iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sharedcare.analytics.views import fhir_types
from sharedcare.analytics.views.dialects import Dialect, Source
from sharedcare.analytics.views.errors import ViewDefinitionError
from sharedcare.analytics.views.expressions import Ctx, ExpressionCompiler, Val
from sharedcare.analytics.views.model import Column, Select, ViewDefinition


@dataclass(frozen=True)
class OutputColumn:
    """A column of the compiled view: name, FHIRPath system type and collection flag."""

    name: str
    system: str
    collection: bool


@dataclass(frozen=True)
class CompiledView:
    """SQL text plus the output columns, in order."""

    sql: str
    columns: tuple[OutputColumn, ...]


def _output_system(column: Column, value: Val) -> str:
    if column.type is not None:
        system = fhir_types.system_type(column.type)
        return system or "json"
    return value.sys or "json"


class _ViewCompiler:
    def __init__(self, view: ViewDefinition, dialect: Dialect) -> None:
        self.view = view
        self.d = dialect
        self.x = ExpressionCompiler(dialect, view.constants)
        self.columns: dict[str, OutputColumn] = {}

    def column_sql(self, column: Column, ctx: Ctx) -> str:
        value = self.x.compile(column.path.ast, ctx)
        system = _output_system(column, value)
        self.columns.setdefault(column.name, OutputColumn(column.name, system, column.collection))
        what = f"column '{column.name}' ({column.path.location})"
        if column.collection:
            out = "string" if system == "json" else system
            return self.d.list_to_output(self.x.to_list(value), out)
        if system == "json":
            # Complex or untyped values: strings as their text, anything else as JSON text.
            return self.d.json_to_scalar(self.x.to_one(value, what), "string")
        sql, got = self.x.to_scalar(value, what, system)
        if got != system:
            return f"CAST({sql} AS {self.d.sql_type(system)})"
        return sql

    def iterate(self, node: Select, ctx: Ctx) -> tuple[list[str], Ctx]:
        """FROM items and inner context for a node's forEach / forEachOrNull / repeat."""
        d = self.d
        alias = self.x.fresh("_f")
        if node.for_each is not None:
            value = self.x.compile(node.for_each.ast, ctx)
            join = d.unnest(self.x.to_list(value), alias, node.or_null)
            index = f"(coalesce({alias}.i, 1) - 1)"
            focus = Val("path", f"{alias}.e", (), False, value.ftype)
            if value.kind == "path" and value.sql in d.written:
                # Same structure in the written twin, so the same position holds the same item.
                twin = self.x.to_list(replace(value, sql=d.written[value.sql]))
                d.written[focus.sql] = d.list_get(twin, f"({alias}.i - 1)")
            return [join], Ctx(focus, index, ctx.root)
        assert node.repeat is not None
        first = [self.x.compile(p.ast, ctx) for p in node.repeat]
        types = {v.ftype for v in first}
        elem_type = types.pop() if len(types) == 1 else None
        rec = Val("path", "_rr.e", (), False, elem_type)
        rec_ctx = Ctx(rec, ctx.row_index, ctx.root)
        again = [self.x.compile(p.ast, rec_ctx) for p in node.repeat]

        def branches(values: list[Val]) -> str:
            parts = []
            for n, v in enumerate(values):
                u = self.x.fresh("_u")
                parts.append(
                    f"SELECT CAST({n} AS BIGINT) AS p, {u}.e AS e, {u}.i AS i FROM "
                    f"{d.list_unnest_select(self.x.to_list(v), u)}"
                )
            return " UNION ALL ".join(parts)

        sub = (
            f"(WITH RECURSIVE _rr(e, k) AS ("
            f"SELECT _s.e, {d.int_list(['_s.p', '_s.i'])} FROM ({branches(first)}) AS _s "
            f"UNION ALL SELECT _c.e, _rr.k || {d.int_list(['_c.p', '_c.i'])} FROM _rr "
            f"CROSS JOIN LATERAL ({branches(again)}) AS _c) "
            f"SELECT e, row_number() OVER (ORDER BY k) AS i FROM _rr)"
        )
        join = f"CROSS JOIN LATERAL {sub} AS {alias}"
        focus = Val("path", f"{alias}.e", (), False, elem_type)
        return [join], Ctx(focus, f"({alias}.i - 1)", ctx.root)

    def rows(self, node: Select, ctx: Ctx) -> tuple[list[str], list[tuple[str, str]]]:
        """FROM items and (name, sql) columns producing the rows of ``node``."""
        froms: list[str] = []
        if node.for_each is not None or node.repeat is not None:
            froms, ctx = self.iterate(node, ctx)
        cols = [(c.name, self.column_sql(c, ctx)) for c in node.columns]
        for child in node.select:
            child_froms, child_cols = self.rows(child, ctx)
            froms.extend(child_froms)
            cols.extend(child_cols)
        if node.union_all:
            alias = self.x.fresh("_ua")
            subs = []
            for branch in node.union_all:
                b_froms, b_cols = self.rows(branch, ctx)
                select = ", ".join(f"{sql} AS {self.d.quote_ident(n)}" for n, sql in b_cols)
                subs.append(f"SELECT {select} FROM (SELECT 1 AS _one) AS _b " + " ".join(b_froms))
            froms.append(f"CROSS JOIN LATERAL ({' UNION ALL '.join(subs)}) AS {alias}")
            for name in node.union_all[0].column_names():
                cols.append((name, f"{alias}.{self.d.quote_ident(name)}"))
        return froms, cols

    def compile(self, source: Source) -> CompiledView:
        d = self.d
        root = Val(
            "path",
            f"_res.{d.quote_ident(source.json_column)}",
            (),
            False,
            self.view.resource,
            is_root=True,
        )
        ctx = Ctx(root, "0", root)
        # Resource-type filter first and outside hoisting, so engines can filter before
        # extracting anything else.
        conds = [f"{root.sql} IS NOT NULL"]
        if source.type_column is not None:
            conds.append(
                f"_res.{d.quote_ident(source.type_column)} = {d.string(self.view.resource)}"
            )
        else:
            rt = d.path_text_one(root.sql, (("resourceType", False),))
            conds.append(f"{rt} = {d.string(self.view.resource)}")
        d.begin(root.sql, "_res")
        froms, cols = self.rows(self.view.root, ctx)
        wheres = [self.x.to_bool(self.x.compile(w.ast, ctx), w.location) for w in self.view.where]
        relation, conds = d.wrap_source(source, conds)
        conds += wheres
        select = ", ".join(f"{sql} AS {d.quote_ident(n)}" for n, sql in cols)
        where = " AND ".join(f"coalesce({c}, FALSE)" for c in conds) or "TRUE"
        sql = f"SELECT {select} FROM {relation} AS _res {' '.join(froms)} WHERE {where}"
        names = self.view.column_names()
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise ViewDefinitionError(f"internal: columns {missing} were not compiled")
        return CompiledView(sql, tuple(self.columns[n] for n in names))


def compile_view(view: ViewDefinition, dialect: Dialect, source: Source) -> CompiledView:
    """Compile a validated view into a SQL query over ``source``.

    Args:
        view: the validated ViewDefinition.
        dialect: target engine dialect.
        source: relation holding the resources.

    Returns:
        The SQL text and the output column descriptions.

    Raises:
        ViewDefinitionError: if an expression is not supported or statically ill-typed.
    """
    return _ViewCompiler(view, dialect).compile(source)
