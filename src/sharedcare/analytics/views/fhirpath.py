"""Parser for the FHIRPath subset used by SQL-on-FHIR v2 ViewDefinitions.

Grammar and operator precedence follow https://hl7.org/fhirpath/N1/#grammar; the functions the
compiler understands are listed in ``compiler.FUNCTIONS``. The parser produces a small AST that the
compiler turns into SQL; it never evaluates anything itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sharedcare.analytics.views.errors import ViewDefinitionError


@dataclass(frozen=True)
class Node:
    """Base class of FHIRPath AST nodes."""


@dataclass(frozen=True)
class Literal(Node):
    """A literal: ``type`` is one of string, integer, decimal, boolean, date, dateTime, time."""

    value: str | int | float | bool
    type: str


@dataclass(frozen=True)
class EmptyLiteral(Node):
    """The empty collection ``{}``."""


@dataclass(frozen=True)
class This(Node):
    """``$this``: the current focus."""


@dataclass(frozen=True)
class Index(Node):
    """``$index``: position of the current item inside ``where``/``select``."""


@dataclass(frozen=True)
class Var(Node):
    """An external constant ``%name`` (view constants and ``%rowIndex``)."""

    name: str


@dataclass(frozen=True)
class Member(Node):
    """Navigation ``target.name``; ``target`` is None for a leading identifier."""

    target: Node | None
    name: str


@dataclass(frozen=True)
class Call(Node):
    """Function invocation ``target.name(args)``; ``target`` None means the current focus."""

    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Indexer(Node):
    """``target[index]``."""

    target: Node
    index: Node


@dataclass(frozen=True)
class Unary(Node):
    """Unary ``+``/``-``."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    """A binary operator expression."""

    op: str
    left: Node
    right: Node


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?
        (?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<special>\$this|\$index|\$total)
  | (?P<ext>%(?:[A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>().,\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\"}


def _unescape(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch.startswith("u"):
            return chr(int(ch[1:], 16))
        return _ESCAPES.get(ch, ch)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", repl, body)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise ViewDefinitionError(
                f"unexpected character at offset {pos} in FHIRPath expression; "
                "check the expression against https://hl7.org/fhirpath/N1/#grammar"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "", pos))
    return toks


# Binary operators by precedence level (lowest first), per the FHIRPath grammar.
_LEVELS: list[tuple[str, ...]] = [
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<", ">", "<=", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
]
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _tokenize(src)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op",):
            raise ViewDefinitionError(
                f"expected '{text}' at offset {tok.pos} in FHIRPath expression"
            )

    def is_op(self, ops: tuple[str, ...]) -> bool:
        tok = self.peek()
        if tok.kind == "op":
            return tok.text in ops
        return tok.kind == "ident" and tok.text in _WORD_OPS and tok.text in ops

    def parse(self) -> Node:
        node = self.binary(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise ViewDefinitionError(
                f"unexpected token at offset {tok.pos} in FHIRPath expression"
            )
        return node

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.is_op(_LEVELS[level]):
            op = self.take().text
            if op in ("is", "as"):
                right: Node = Literal(self.type_name(), "string")
            else:
                right = self.binary(level + 1)
            left = Binary(op, left, right)
        return left

    def type_name(self) -> str:
        tok = self.take()
        if tok.kind not in ("ident", "quoted"):
            raise ViewDefinitionError(f"expected a type name at offset {tok.pos}")
        name = tok.text if tok.kind == "ident" else _unescape(tok.text[1:-1])
        while self.peek().text == "." and self.toks[self.i + 1].kind == "ident":
            self.take()
            name = self.take().text  # System.String -> String
        return name

    def unary(self) -> Node:
        if self.is_op(("+", "-")):
            op = self.take().text
            return Unary(op, self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.term()
        while True:
            if self.is_op((".",)):
                self.take()
                node = self.invocation(node)
            elif self.is_op(("[",)):
                self.take()
                index = self.binary(0)
                self.expect("]")
                node = Indexer(node, index)
            else:
                return node

    def invocation(self, target: Node | None) -> Node:
        tok = self.take()
        if tok.kind == "ident" or (tok.kind == "quoted"):
            name = tok.text if tok.kind == "ident" else _unescape(tok.text[1:-1])
            if tok.kind == "ident" and self.is_op(("(",)):
                self.take()
                args: list[Node] = []
                if not self.is_op((")",)):
                    args.append(self.binary(0))
                    while self.is_op((",",)):
                        self.take()
                        args.append(self.binary(0))
                self.expect(")")
                return Call(target, name, tuple(args))
            return Member(target, name)
        if tok.kind == "special" and target is None:
            return This() if tok.text == "$this" else Index()
        raise ViewDefinitionError(
            f"expected a name or function call at offset {tok.pos} in FHIRPath expression"
        )

    def term(self) -> Node:
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            if "." in tok.text:
                return Literal(float(tok.text), "decimal")
            return Literal(int(tok.text), "integer")
        if tok.kind == "string":
            self.take()
            return Literal(_unescape(tok.text[1:-1]), "string")
        if tok.kind == "datetime":
            self.take()
            text = tok.text[1:]
            return Literal(text, "dateTime" if "T" in text else "date")
        if tok.kind == "time":
            self.take()
            return Literal(tok.text[2:], "time")
        if tok.kind == "ext":
            self.take()
            name = tok.text[1:]
            if name[0] in "'`":
                name = _unescape(name[1:-1])
            return Var(name)
        if tok.kind == "ident" and tok.text in ("true", "false"):
            self.take()
            return Literal(tok.text == "true", "boolean")
        if tok.kind == "op" and tok.text == "(":
            self.take()
            node = self.binary(0)
            self.expect(")")
            return node
        if tok.kind == "op" and tok.text == "{":
            self.take()
            self.expect("}")
            return EmptyLiteral()
        if tok.kind in ("ident", "quoted", "special"):
            return self.invocation(None)
        raise ViewDefinitionError(
            f"unexpected token at offset {tok.pos} in FHIRPath expression; "
            "see https://hl7.org/fhirpath/N1/#grammar"
        )


def parse(expression: str) -> Node:
    """Parse a FHIRPath expression.

    Args:
        expression: FHIRPath source text.

    Returns:
        The root AST node.

    Raises:
        ViewDefinitionError: if the text is not valid FHIRPath.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ViewDefinitionError("FHIRPath expression must be a non-empty string")
    return _Parser(expression).parse()
