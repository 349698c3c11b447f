"""Compile FHIRPath (the SQL-on-FHIR subset) to SQL expressions.

Supported, per https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#required-fhirpath-expressionsfunctions:
navigation, indexer ``[n]``, literals, ``%constants`` and ``%rowIndex``, ``$this``, operators
``= != < <= > >= and or xor implies not() + - * / div mod & |``, ``is``/``as``, and the functions
``where exists empty first last count not join ofType extension getResourceKey getReferenceKey
lowBoundary highBoundary``.

Static FHIR R4 types (``fhir_types``) drive choice-type resolution, numeric vs string comparison,
JSON path generation and the "where must be boolean" check.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from sharedcare.analytics.views import fhir_types
from sharedcare.analytics.views import fhirpath as fp
from sharedcare.analytics.views.dialects import Dialect, Step
from sharedcare.analytics.views.errors import ViewDefinitionError
from sharedcare.analytics.views.model import Constant

FUNCTIONS = (
    "where",
    "exists",
    "empty",
    "first",
    "last",
    "count",
    "not",
    "join",
    "ofType",
    "extension",
    "getResourceKey",
    "getReferenceKey",
    "lowBoundary",
    "highBoundary",
)

_NUMERIC = ("integer", "decimal")


@dataclass(frozen=True)
class Val:
    """A compiled FHIRPath collection.

    kinds: ``path`` (JSON navigation from ``sql`` through ``steps``), ``list`` (a SQL list of
    JSON), ``scalar`` (a native SQL value, NULL = empty), ``empty`` and ``choice`` (an unresolved
    choice element ``key[x]`` of ``parent``).
    """

    kind: str
    sql: str = ""
    steps: tuple[Step, ...] = ()
    many: bool = False
    ftype: str | None = None
    system: str | None = None
    parent: Val | None = None
    key: str | None = None
    types: tuple[str, ...] = ()
    is_root: bool = False

    @property
    def sys(self) -> str | None:
        """FHIRPath system type if known."""
        if self.kind == "scalar":
            return self.system
        return fhir_types.system_type(self.ftype)


@dataclass(frozen=True)
class Ctx:
    """Evaluation context: current focus, %rowIndex and the resource root."""

    focus: Val
    row_index: str
    root: Val


class ExpressionCompiler:
    """Turns FHIRPath ASTs into SQL for one dialect and one view's constants."""

    def __init__(self, dialect: Dialect, constants: dict[str, Constant]) -> None:
        self.d = dialect
        self.constants = constants
        self._ids = itertools.count()

    def fresh(self, prefix: str) -> str:
        """A unique SQL alias/variable name."""
        return f"{prefix}{next(self._ids)}"

    # --- conversions ------------------------------------------------------------------------
    def to_list(self, v: Val) -> str:
        """SQL list of JSON items."""
        d = self.d
        if v.kind == "path":
            if v.many:
                return d.path_many(v.sql, v.steps)
            return d.list_of_one(d.path_one(v.sql, v.steps))
        if v.kind == "list":
            return v.sql
        if v.kind == "scalar":
            return d.list_of_one(d.scalar_to_json(v.sql))
        if v.kind == "choice":
            return d.list_concat([self.to_list(self._resolve_choice(v, t)) for t in v.types])
        return d.empty_list()

    def singleton(self, lst: str, what: str) -> str:
        """The only item of a list (NULL if empty); fails at run time if there are more."""
        d = self.d
        message = f"{what} returned more than one value; use first(), a filter, or collection: true"

        def pick(items: str) -> str:
            err = d.raise_error(message, d.list_len(items), d.json_sql_type)
            return (
                f"(CASE WHEN {d.list_len(items)} > 1 THEN {err} ELSE {d.list_get(items, '0')} END)"
            )

        return d.bind(lst, self.fresh("_l"), pick)

    def to_one(self, v: Val, what: str) -> str:
        """A single JSON value (NULL = empty)."""
        if v.kind == "path" and not v.many:
            return self.d.path_one(v.sql, v.steps)
        if v.kind == "scalar":
            return self.d.scalar_to_json(v.sql)
        if v.kind == "empty":
            return "NULL"
        return self.singleton(self.to_list(v), what)

    def to_scalar(self, v: Val, what: str, want: str | None = None) -> tuple[str, str]:
        """A native SQL scalar and its system type (``json`` for complex/unknown values)."""
        d = self.d
        system = v.sys or want or "json"
        if want in _NUMERIC and system in _NUMERIC:
            system = want
        if v.kind == "scalar":
            if v.system != system and system in _NUMERIC:
                return f"CAST({v.sql} AS {d.sql_type(system)})", system
            return v.sql, system
        if v.kind == "empty":
            return "NULL", system
        if system == "json":
            return self.to_one(v, what), system
        if v.kind == "path" and not v.many and v.steps and system not in (*_NUMERIC, "boolean"):
            return d.path_text_one(v.sql, v.steps), system
        return d.json_to_scalar(self.to_one(v, what), system), system

    def to_bool(self, v: Val, what: str) -> str:
        """A SQL boolean; statically rejects collections known not to be boolean."""
        system = v.sys
        if v.kind == "choice":
            if "boolean" not in v.types:
                raise ViewDefinitionError(f"{what} must evaluate to a boolean")
            v = self._resolve_choice(v, "boolean")
            system = "boolean"
        if v.kind != "empty" and system is not None and system != "boolean":
            raise ViewDefinitionError(
                f"{what} must evaluate to a boolean, but it yields {v.ftype or system}; "
                "compare it with a value or use exists()"
            )
        if v.kind == "path" and v.ftype is not None and system is None:
            raise ViewDefinitionError(
                f"{what} must evaluate to a boolean, but it yields {v.ftype}; use exists()"
            )
        sql, _ = self.to_scalar(v, what, "boolean")
        return sql

    # --- navigation -------------------------------------------------------------------------
    def member(self, v: Val, name: str) -> Val:
        """Navigate a child element ``name`` of every item."""
        d = self.d
        if v.kind in ("empty", "scalar"):
            return Val("empty")
        if v.kind == "choice":
            v = Val("list", self.to_list(v), many=True)
        info = fhir_types.element(v.ftype, name)
        if info is None:
            return Val(
                "list", d.list_member(self.to_list(v), name, None), many=True, parent=v, key=name
            )
        if info.choice:
            return Val("choice", parent=v, key=name, types=info.types, many=v.many or info.many)
        ftype = info.types[0] if len(info.types) == 1 else None
        if v.kind == "path":
            return Val("path", v.sql, (*v.steps, (name, info.many)), v.many or info.many, ftype)
        return Val("list", d.list_member(v.sql, name, info.many), many=True, ftype=ftype)

    def _resolve_choice(self, v: Val, type_name: str) -> Val:
        assert v.parent is not None and v.key is not None
        key = fhir_types.choice_key(v.key, type_name)
        parent = v.parent
        if parent.kind == "path":
            return Val("path", parent.sql, (*parent.steps, (key, False)), parent.many, type_name)
        lst = self.d.list_member(self.to_list(parent), key, False)
        return Val("list", lst, many=True, ftype=type_name)

    def index(self, v: Val, i_sql: str, i_static: int | None) -> Val:
        """``v[i]`` (0-based)."""
        if v.kind == "path" and i_static is not None and i_static >= 0:
            many_steps = [n for n, (_, many) in enumerate(v.steps) if many]
            if not many_steps:
                return v if i_static == 0 else Val("empty")
            if many_steps == [len(v.steps) - 1]:
                key = v.steps[-1][0]
                steps = (*v.steps[:-1], (key, False), (f"[{i_static}]", False))
                return replace(v, steps=steps, many=False)
        if v.kind == "scalar":
            return v if i_static == 0 else Val("empty")
        one = self.d.list_get(self.to_list(v), i_sql)
        return Val("path", one, (), False, v.ftype)

    # --- expressions ------------------------------------------------------------------------
    def compile(self, node: fp.Node, ctx: Ctx) -> Val:
        """Compile ``node`` evaluated against ``ctx``."""
        d = self.d
        if isinstance(node, fp.Literal):
            return Val("scalar", d.literal(node.value, node.type), system=node.type)
        if isinstance(node, fp.EmptyLiteral):
            return Val("empty")
        if isinstance(node, fp.This):
            return ctx.focus
        if isinstance(node, fp.Var):
            return self._var(node.name, ctx)
        if isinstance(node, fp.Member):
            if node.target is None:
                if ctx.focus.ftype == node.name and ctx.focus.is_root:
                    return ctx.focus
                return self.member(ctx.focus, node.name)
            return self.member(self.compile(node.target, ctx), node.name)
        if isinstance(node, fp.Indexer):
            target = self.compile(node.target, ctx)
            idx = self.compile(node.index, ctx)
            static = None
            if idx.kind == "scalar" and idx.system == "integer":
                static = _static_int(node.index, self.constants)
            i_sql, _ = self.to_scalar(idx, "indexer", "integer")
            return self.index(target, i_sql, static)
        if isinstance(node, fp.Unary):
            v = self.compile(node.operand, ctx)
            sql, system = self.to_scalar(v, "unary operand", "decimal")
            return Val("scalar", f"(-{sql})" if node.op == "-" else sql, system=system)
        if isinstance(node, fp.Binary):
            return self._binary(node, ctx)
        if isinstance(node, fp.Call):
            return self._call(node, ctx)
        raise ViewDefinitionError(f"unsupported FHIRPath construct {type(node).__name__}")

    def _var(self, name: str, ctx: Ctx) -> Val:
        if name == "rowIndex":
            return Val("scalar", ctx.row_index, system="integer")
        if name in ("resource", "rootResource"):
            return ctx.root
        const = self.constants.get(name)
        if const is None:
            raise ViewDefinitionError(f"%{name} is not defined; add it to the view's constant list")
        return Val("scalar", self.d.literal(const.value, const.type), system=const.type)

    def _binary(self, node: fp.Binary, ctx: Ctx) -> Val:
        op = node.op
        if op in ("is", "as"):
            assert isinstance(node.right, fp.Literal)
            typed = self._of_type(self.compile(node.left, ctx), str(node.right.value))
            if op == "as":
                return typed
            return self._exists(typed)
        left = self.compile(node.left, ctx)
        right = self.compile(node.right, ctx)
        what = f"operand of '{op}'"
        if op in ("and", "or", "xor", "implies"):
            a, b = self.to_bool(left, what), self.to_bool(right, what)
            sql = {
                "and": f"({a} AND {b})",
                "or": f"({a} OR {b})",
                "xor": f"({a} <> {b})",
                "implies": f"((NOT {a}) OR {b})",
            }[op]
            return Val("scalar", sql, system="boolean")
        if op == "|":
            lst = self.d.list_distinct(
                self.d.list_concat([self.to_list(left), self.to_list(right)])
            )
            same = left.ftype if left.ftype == right.ftype else None
            return Val("list", lst, many=True, ftype=same)
        if op == "&":
            a, _ = self.to_scalar(left, what, "string")
            b, _ = self.to_scalar(right, what, "string")
            return Val("scalar", f"(coalesce({a}, '') || coalesce({b}, ''))", system="string")
        want = _common_type(left.sys, right.sys)
        if op in ("/",) and want in _NUMERIC:
            want = "decimal"
        a, sa = self.to_scalar(left, what, want)
        b, sb = self.to_scalar(right, what, want)
        if op in ("=", "!=", "~", "!~", "<", ">", "<=", ">="):
            sql_op = {"=": "=", "~": "=", "!=": "<>", "!~": "<>"}.get(op, op)
            if sa == "json" or sb == "json":
                text = self.d.sql_type("string")
                a, b = f"CAST({a} AS {text})", f"CAST({b} AS {text})"
            return Val("scalar", f"({a} {sql_op} {b})", system="boolean")
        if op == "+" and sa not in _NUMERIC:
            return Val("scalar", f"({a} || {b})", system="string")
        if op in ("+", "-", "*"):
            return Val("scalar", f"({a} {op} {b})", system=want or "decimal")
        if op == "/":
            return Val("scalar", f"({a} / nullif({b}, 0))", system="decimal")
        if op == "div":
            return Val("scalar", self.d.int_div(a, b), system="integer")
        if op == "mod":
            return Val("scalar", f"({a} % nullif({b}, 0))", system=want or "decimal")
        raise ViewDefinitionError(f"operator '{op}' is not supported by this view engine")

    def _exists(self, v: Val) -> Val:
        d = self.d
        if v.kind == "path" and not v.many:
            return Val("scalar", f"({d.path_one(v.sql, v.steps)} IS NOT NULL)", system="boolean")
        if v.kind == "scalar":
            return Val("scalar", f"({v.sql} IS NOT NULL)", system="boolean")
        if v.kind == "empty":
            return Val("scalar", "FALSE", system="boolean")
        return Val("scalar", f"({d.list_len(self.to_list(v))} > 0)", system="boolean")

    def _of_type(self, v: Val, type_name: str) -> Val:
        if v.kind == "choice":
            if type_name not in v.types:
                return Val("empty")
            return self._resolve_choice(v, type_name)
        if v.ftype is not None:
            return v if v.ftype == type_name else Val("empty")
        if v.kind == "scalar":
            return v if v.system == type_name.lower() else Val("empty")
        if v.parent is not None and v.key is not None:
            # Unknown element: follow the JSON choice-type naming convention.
            key = fhir_types.choice_key(v.key, type_name)
            lst = self.d.list_member(self.to_list(v.parent), key, None)
            return Val("list", lst, many=True, ftype=type_name)
        return replace(v, ftype=type_name)

    def _type_arg(self, node: fp.Call, position: int = 0) -> str:
        arg = node.args[position]
        if isinstance(arg, fp.Member) and arg.target is None:
            return arg.name
        if isinstance(arg, fp.Literal) and isinstance(arg.value, str):
            return arg.value
        raise ViewDefinitionError(f"{node.name}() needs a type name argument, e.g. Patient")

    def _call(self, node: fp.Call, ctx: Ctx) -> Val:
        d = self.d
        name = node.name
        if name not in FUNCTIONS:
            raise ViewDefinitionError(
                f"function '{name}()' is not supported; supported functions: {', '.join(FUNCTIONS)}"
            )
        target = ctx.focus if node.target is None else self.compile(node.target, ctx)
        nargs = len(node.args)
        if name == "where" or (name == "exists" and nargs == 1):
            if nargs != 1:
                raise ViewDefinitionError("where() takes exactly one criteria expression")
            filtered = self._where(target, node.args[0], ctx)
            return filtered if name == "where" else self._exists(filtered)
        if nargs and name not in ("join", "ofType", "extension", "getReferenceKey"):
            raise ViewDefinitionError(f"{name}() takes no arguments")
        if name == "exists":
            return self._exists(target)
        if name == "empty":
            ex = self._exists(target)
            return Val("scalar", f"(NOT {ex.sql})", system="boolean")
        if name == "first":
            return self.index(target, "0", 0)
        if name == "last":
            lst = self.to_list(target)
            return Val("path", d.list_get(lst, f"{d.list_len(lst)} - 1"), (), False, target.ftype)
        if name == "count":
            return Val("scalar", d.list_len(self.to_list(target)), system="integer")
        if name == "not":
            return Val(
                "scalar", f"(NOT {self.to_bool(target, 'input of not()')})", system="boolean"
            )
        if name == "join":
            sep = "''"
            if nargs:
                sep_val = self.compile(node.args[0], ctx)
                sep, _ = self.to_scalar(sep_val, "join() separator", "string")
            return Val("scalar", d.string_join(self.to_list(target), sep), system="string")
        if name == "ofType":
            if nargs != 1:
                raise ViewDefinitionError("ofType() takes exactly one type name")
            return self._of_type(target, self._type_arg(node))
        if name == "extension":
            if nargs != 1:
                raise ViewDefinitionError("extension() takes exactly one url argument")
            url = fp.Binary("=", fp.Member(None, "url"), node.args[0])
            return self._where(self.member(target, "extension"), url, ctx)
        if name == "getResourceKey":
            if not target.is_root:
                raise ViewDefinitionError("getResourceKey() can only be called on the resource")
            rt = d.path_text_one(target.sql, (("resourceType", False),))
            rid = d.path_text_one(target.sql, (("id", False),))
            return Val("scalar", d.concat([rt, "'/'", rid]), system="string")
        if name == "getReferenceKey":
            type_name = self._type_arg(node) if nargs else None
            return self._reference_key(target, type_name)
        return self._boundary(target, name)

    def _where(self, target: Val, criteria: fp.Node, ctx: Ctx) -> Val:
        d = self.d
        var = self.fresh("_x")
        item = Val("path", d.lambda_ref(var), (), False, target.ftype)
        inner = Ctx(item, ctx.row_index, ctx.root)
        cond = self.to_bool(self.compile(criteria, inner), "where() criteria")
        lst = d.list_filter(self.to_list(target), var, cond)
        return Val("list", lst, many=True, ftype=target.ftype)

    def _reference_key(self, target: Val, type_name: str | None) -> Val:
        d = self.d
        ref = (("reference", False),)
        if target.kind == "path" and not target.many:
            text = d.path_text_one(target.sql, (*target.steps, *ref))
            return Val("scalar", d.reference_key(text, type_name), system="string")
        var = self.fresh("_r")
        text = d.path_text_one(d.lambda_ref(var), ref)
        key = d.scalar_to_json(d.reference_key(text, type_name))
        return Val("list", d.list_map(self.to_list(target), var, key), many=True, ftype="string")

    def _boundary(self, target: Val, name: str) -> Val:
        from sharedcare.analytics.views.boundaries import boundary

        return boundary(self, target, name)


def _common_type(a: str | None, b: str | None) -> str | None:
    if a is None or a == "json":
        return b
    if b is None or b == "json":
        return a
    if a in _NUMERIC and b in _NUMERIC:
        return "decimal" if "decimal" in (a, b) else "integer"
    return a


def _static_int(node: fp.Node, constants: dict[str, Constant]) -> int | None:
    if isinstance(node, fp.Literal) and node.type == "integer":
        return int(node.value)
    if isinstance(node, fp.Var) and node.name in constants:
        value = constants[node.name].value
        return value if isinstance(value, int) else None
    return None
