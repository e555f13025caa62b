"""Static types of mapping expressions, for checks at load time.

Each expression gets a kind (text, number, boolean, list, object, null or any) and, where it
can only produce known text constants (a literal, the branches of an ``if``, the values of a
lookup table), those constants. A field whose expression can never fit its target field is
refused before any event runs: a list into a text field, text into a boolean, or a status
that is not among the target's allowed values.
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import UnionType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .expr import Lookup

TEXT, NUMBER, BOOLEAN, LIST, OBJECT, NULL, ANY = (
    "text",
    "number",
    "boolean",
    "list",
    "object",
    "null",
    "any",
)

RETURNS: dict[str, str] = {
    "decimal": NUMBER,
    "int": NUMBER,
    "round": NUMBER,
    "sum": NUMBER,
    "length": NUMBER,
    "format_datetime": TEXT,
    "str": TEXT,
    "money": TEXT,
    "datetime_utc": TEXT,
    "date": TEXT,
    "trim": TEXT,
    "lower": TEXT,
    "upper": TEXT,
    "concat": TEXT,
    "join": TEXT,
    "replace": TEXT,
    "extract": TEXT,
    "pad_left": TEXT,
    "pad_right": TEXT,
    "truncate": TEXT,
    "golden_id": TEXT,
    "external_id": TEXT,
    "bool": BOOLEAN,
    "matches": BOOLEAN,
    "split": LIST,
    "compact": LIST,
    "pluck": LIST,
}


@dataclass(frozen=True)
class Inferred:
    kind: str
    constants: frozenset[str] | None = None  # every text value it can produce, if known

    def __or__(self, other: Inferred) -> Inferred:
        kinds = {self.kind, other.kind} - {NULL}
        kind = kinds.pop() if len(kinds) == 1 else (NULL if not kinds else ANY)
        if self.constants is not None and other.constants is not None:
            return Inferred(kind, self.constants | other.constants)
        return Inferred(kind)


def infer(source: str, lookups: Mapping[str, Lookup]) -> Inferred:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        return Inferred(ANY)
    return infer_node(tree.body, lookups)


def infer_node(node: ast.expr, lookups: Mapping[str, Lookup]) -> Inferred:
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return Inferred(BOOLEAN)
        if isinstance(v, str):
            return Inferred(TEXT, frozenset({v}))
        if v is None:
            return Inferred(NULL, frozenset())
        return Inferred(NUMBER)
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return Inferred(BOOLEAN)
    if isinstance(node, ast.Name) and node.id == "null":
        return Inferred(NULL, frozenset())
    if isinstance(node, ast.JoinedStr):
        return Inferred(TEXT)
    if isinstance(node, ast.List):
        return Inferred(LIST)
    if isinstance(node, ast.Dict):
        return Inferred(OBJECT)
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Inferred(BOOLEAN)
        return Inferred(NUMBER)
    if isinstance(node, ast.Compare):
        return Inferred(BOOLEAN)
    if isinstance(node, ast.IfExp):
        return infer_node(node.body, lookups) | infer_node(node.orelse, lookups)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        result = infer_node(node.values[0], lookups)
        for value in node.values[1:]:
            result = result | infer_node(value, lookups)
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == "lookup" and node.args and isinstance(node.args[0], ast.Constant):
            table = lookups.get(str(node.args[0].value))
            if table is not None:
                values = list(table.values.values())
                if table.has_default:
                    values.append(table.default)
                if values and all(isinstance(v, str) for v in values):
                    return Inferred(TEXT, frozenset(values))
            return Inferred(ANY)
        if name in ("coalesce", "default") and node.args:
            result = infer_node(node.args[0], lookups)
            for arg in node.args[1:]:
                result = result | infer_node(arg, lookups)
            return result
        return Inferred(RETURNS.get(name, ANY))
    return Inferred(ANY)


@dataclass(frozen=True)
class Expected:
    """What a target field accepts."""

    kinds: frozenset[str]
    allowed: frozenset[str] | None = None  # for Literal['a', 'b'] fields
    label: str = ""


def expected(annotation: Any) -> Expected | None:
    """The kinds a pydantic field annotation accepts; None when it cannot be told."""
    kinds: set[str] = set()
    allowed: set[str] | None = None
    labels: list[str] = []
    for part in _flatten(annotation):
        if part is type(None):
            continue
        origin = typing.get_origin(part)
        if origin is typing.Literal:
            values = typing.get_args(part)
            if all(isinstance(v, str) for v in values):
                kinds.add(TEXT)
                allowed = (allowed or set()) | set(values)
                labels.append("one of " + ", ".join(repr(v) for v in values))
                continue
            return None
        base = origin or part
        if base is str:
            kinds.add(TEXT)
            kinds.add(NUMBER)  # exact decimals are written as text
            labels.append("text")
        elif base is bool:
            kinds.add(BOOLEAN)
            labels.append("a boolean")
        elif base in (int, float, Decimal):
            kinds.add(NUMBER)
            labels.append("a number")
        elif base is list:
            kinds.add(LIST)
            labels.append("a list")
        elif isinstance(base, type) and issubclass(base, BaseModel):
            kinds.add(OBJECT)
            labels.append(f"an object ({base.__name__})")
        else:
            return None
    if not kinds:
        return None
    return Expected(frozenset(kinds), frozenset(allowed) if allowed else None, " or ".join(labels))


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_flatten(arg))
        return out
    return [annotation]


def mismatch(got: Inferred, want: Expected) -> str | None:
    """Why an expression of type ``got`` can never fit ``want``; None if it may."""
    if got.kind in (ANY, NULL):
        return None
    if got.kind not in want.kinds:
        article = "an" if got.kind[0] in "aeiou" else "a"
        what = "text" if got.kind == TEXT else f"{article} {got.kind}"
        return f"the expression gives {what}, but the field takes {want.label}"
    if want.allowed is not None and got.constants is not None:
        bad = sorted(got.constants - want.allowed)
        if bad:
            return (
                f"{', '.join(repr(b) for b in bad)} is not allowed here "
                f"(allowed: {', '.join(sorted(want.allowed))})"
            )
    return None
