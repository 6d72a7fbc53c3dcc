"""The condition language of workflow steps: a small, safe subset of JavaScript expressions.

Grammar (JavaScript precedence, lowest first)::

    expr     := or
    or       := and ( "||" and )*
    and      := equality ( "&&" equality )*
    equality := relation ( ( "==" | "!=" | "===" | "!==" ) relation )*
    relation := unary ( ( "<" | "<=" | ">" | ">=" ) unary )*
    unary    := ( "!" | "-" ) unary | primary
    primary  := NUMBER | STRING | "true" | "false" | "null" | "undefined"
              | path | "(" expr ")"
    path     := ROOT ( "." NAME | "[" ( STRING | NUMBER ) "]" )*
    ROOT     := "inputs" | "steps" | "trigger"

Strings are quoted with ``'`` or ``"`` (backslash escapes ``\\n \\t \\\\ \\' \\"``). Nothing is
ever ``eval``-ed: an expression is parsed once into a tree (``parse`` raises ``ConditionError``
with the column of the problem) and evaluated against plain data. Evaluation never raises: a
missing member is ``null``, comparing values of different types is ``false``, ``.length`` gives
the length of a string, list or object, and truthiness follows JavaScript (``0``, ``""``,
``null``, ``false`` are false; lists and objects are true).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

ROOTS = frozenset({"inputs", "steps", "trigger"})
MAX_LENGTH = 2000
MAX_DEPTH = 64


class ConditionError(ValueError):
    def __init__(self, message: str, position: int | None = None):
        self.position = position
        super().__init__(message if position is None else f"{message} (at column {position + 1})")


# --- tokens ------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!().\[\]-])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
""",
    re.X,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
_LITERALS = {"true": True, "false": False, "null": None, "undefined": None}


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | op | name | end
    value: Any
    pos: int


def _unescape(body: str, pos: int) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise ConditionError(f"unknown escape \\{nxt} in a string", pos + i + 1)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ConditionError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup
        raw = match.group()
        if kind == "number":
            tokens.append(Token("number", float(raw) if any(c in raw for c in ".eE") else int(raw), pos))
        elif kind == "string":
            tokens.append(Token("string", _unescape(raw[1:-1], pos + 1), pos))
        elif kind in ("op", "name"):
            tokens.append(Token(kind, raw, pos))
        pos = match.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    root: str
    members: tuple  # of str | int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, *ops: str) -> str | None:
        if self.current.kind == "op" and self.current.value in ops:
            return self.take().value
        return None

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise ConditionError(f"expected {op!r}, found {self._describe(self.current)}", self.current.pos)

    @staticmethod
    def _describe(token: Token) -> str:
        return "the end of the expression" if token.kind == "end" else repr(str(token.value))

    def parse(self):
        if not self.text.strip():
            raise ConditionError("the condition is empty")
        node = self.parse_or()
        if self.current.kind != "end":
            raise ConditionError(f"unexpected {self._describe(self.current)}", self.current.pos)
        return node

    def _binary(self, operand, ops):
        node = operand()
        while (op := self.accept(*ops)) is not None:
            node = Binary(op, node, operand())
        return node

    def parse_or(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError("the condition is nested too deeply", self.current.pos)
        try:
            return self._binary(self.parse_and, ("||",))
        finally:
            self.depth -= 1

    def parse_and(self):
        return self._binary(self.parse_equality, ("&&",))

    def parse_equality(self):
        return self._binary(self.parse_relation, ("===", "!==", "==", "!="))

    def parse_relation(self):
        return self._binary(self.parse_unary, ("<=", ">=", "<", ">"))

    def parse_unary(self):
        op = self.accept("!", "-")
        if op is not None:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConditionError("the condition is nested too deeply", self.current.pos)
            try:
                return Unary(op, self.parse_unary())
            finally:
                self.depth -= 1
        return self.parse_primary()

    def parse_primary(self):
        token = self.current
        if token.kind in ("number", "string"):
            self.take()
            return Literal(token.value)
        if token.kind == "op" and token.value == "(":
            self.take()
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "name":
            self.take()
            if token.value in _LITERALS:
                return Literal(_LITERALS[token.value])
            if token.value not in ROOTS:
                raise ConditionError(
                    f"unknown name {token.value!r} (use inputs.…, steps.<id>.… or trigger.…)", token.pos
                )
            members: list = []
            while True:
                if self.accept("."):
                    name = self.current
                    if name.kind != "name":
                        raise ConditionError(
                            f"expected a member name after '.', found {self._describe(name)}", name.pos
                        )
                    self.take()
                    members.append(name.value)
                elif self.accept("["):
                    key = self.current
                    if key.kind not in ("string", "number") or isinstance(key.value, float):
                        raise ConditionError("expected a string or an integer index inside [ ]", key.pos)
                    self.take()
                    self.expect("]")
                    members.append(key.value)
                else:
                    break
            return Path(token.value, tuple(members))
        raise ConditionError(f"unexpected {self._describe(token)}", token.pos)


def parse(text: str):
    """The expression's tree; ``ConditionError`` (with the column) when it is not valid."""
    if not isinstance(text, str):
        raise ConditionError("a condition is a string")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters")
    return _Parser(text).parse()


def referenced_steps(tree) -> set[str]:
    """The step ids the expression reads (``steps.<id>`` / ``steps["<id>"]``)."""
    found: set[str] = set()

    def walk(node):
        if isinstance(node, Path):
            if node.root == "steps" and node.members:
                found.add(str(node.members[0]))
        elif isinstance(node, Unary):
            walk(node.operand)
        elif isinstance(node, Binary):
            walk(node.left)
            walk(node.right)

    walk(tree)
    return found


# --- evaluation --------------------------------------------------------------------------------


def truthy(value) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    return a == b


def _compare(op: str, a, b) -> bool:
    if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _member(value, key):
    if key == "length" and isinstance(value, (str, list, dict)):
        if not (isinstance(value, dict) and "length" in value):
            return len(value)
    if isinstance(value, dict):
        return value.get(str(key)) if not isinstance(key, int) else value.get(str(key))
    if isinstance(value, list) and isinstance(key, int):
        return value[key] if 0 <= key < len(value) else None
    if isinstance(value, list) and isinstance(key, str) and key.isdigit():
        index = int(key)
        return value[index] if index < len(value) else None
    return None


def evaluate(tree, context: dict) -> Any:
    """The value of the expression over ``context`` (``{"inputs": …, "steps": …, "trigger": …}``)."""
    if isinstance(tree, Literal):
        return tree.value
    if isinstance(tree, Path):
        value = context.get(tree.root)
        for member in tree.members:
            value = _member(value, member)
            if value is None:
                return None
        return value
    if isinstance(tree, Unary):
        operand = evaluate(tree.operand, context)
        if tree.op == "!":
            return not truthy(operand)
        return -operand if _is_number(operand) else None
    if isinstance(tree, Binary):
        if tree.op == "&&":
            left = evaluate(tree.left, context)
            return evaluate(tree.right, context) if truthy(left) else left
        if tree.op == "||":
            left = evaluate(tree.left, context)
            return left if truthy(left) else evaluate(tree.right, context)
        left, right = evaluate(tree.left, context), evaluate(tree.right, context)
        if tree.op in ("==", "==="):
            return _equal(left, right)
        if tree.op in ("!=", "!=="):
            return not _equal(left, right)
        return _compare(tree.op, left, right)
    raise TypeError(f"not an expression node: {tree!r}")


def check(text: str, context: dict) -> bool:
    """Parse and evaluate to a boolean (JavaScript truthiness)."""
    return truthy(evaluate(parse(text), context))


# --- templates in step parameters: "{{ expression }}" ------------------------------------------

_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.S)


def template_expressions(value) -> list[str]:
    """Every ``{{ … }}`` expression inside a JSON value's strings."""
    found: list[str] = []
    if isinstance(value, str):
        found += [m.group(1).strip() for m in _TEMPLATE_RE.finditer(value)]
    elif isinstance(value, list):
        for item in value:
            found += template_expressions(item)
    elif isinstance(value, dict):
        for item in value.values():
            found += template_expressions(item)
    return found


def render(value, context: dict):
    """Replace ``{{ expr }}`` in strings: a string that is exactly one template takes the value
    itself (any JSON type); otherwise the values are formatted into the text (null → "")."""
    if isinstance(value, str):
        whole = _TEMPLATE_RE.fullmatch(value.strip())
        if whole:
            return evaluate(parse(whole.group(1).strip()), context)

        def text(match):
            result = evaluate(parse(match.group(1).strip()), context)
            if result is None:
                return ""
            if isinstance(result, bool):
                return "true" if result else "false"
            if isinstance(result, (dict, list)):
                return json.dumps(result, default=str)
            return str(result)

        return _TEMPLATE_RE.sub(text, value)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value
