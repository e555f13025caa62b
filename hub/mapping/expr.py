"""Mapping expressions: parsed with Python's parser, checked, and compiled to Python source.

User text is never evaluated: :class:`_Compiler` walks the syntax tree, accepts only the node
types listed here and writes the source of each from our own templates, with every value from
the expression bound as a constant of the namespace the code runs in. :func:`compile_expr`
makes one function of one expression; :func:`expr_source` gives the source of an expression
for a larger generated function (a whole mapping, :mod:`hub.mapping.codegen`). The language:

- paths: ``customer.email``, ``line_items[0].sku``, ``note_attributes[-1]``; a missing key, an
  index out of range or a step through null gives ``null`` instead of failing;
- the roots ``root`` (the whole input), ``item`` (the current element, same as bare names) and
  ``meta`` (``connection``, ``origin``, ``system``, ``event_type``, ``event_id``, ``subject``);
- literals: strings, numbers (exact decimals), ``true``/``false``/``null`` (Python spellings
  also work), lists ``[a, b]``, objects ``{'k': v}``; f-strings ``f"{first} {last}"``;
- operators: ``+ - * / // %`` (decimal arithmetic, never joining text), comparisons, ``in``,
  ``and``/``or``/``not``, and ``a if cond else b``;
- calls of the functions in :mod:`hub.mapping.functions` only.
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

from hub.settings import ENTITIES

from . import types
from .functions import FUNCTIONS, Function, MappingFunctionError, to_decimal


@dataclass(slots=True)
class Scope:
    """What an expression sees while one record is mapped."""

    item: Any
    root: Any
    meta: Mapping[str, Any]
    context: MappingContext


@dataclass(slots=True)
class MappingContext:
    """Per-run services: lookup tables of the mapping, the ID resolver."""

    lookups: Mapping[str, Lookup]
    resolver: Any
    mapping: str = ""
    mappings: Any = None  # the MappingSet, for ``use:``


@dataclass(frozen=True)
class Lookup:
    name: str
    values: Mapping[str, Any]
    default: Any = None
    has_default: bool = False


Compiled = Callable[[Scope], Any]


class ExprError(ValueError):
    """An expression cannot be compiled; ``message`` says why."""


@dataclass
class ExprInfo:
    """What static checking learned about an expression."""

    functions: set[str] = field(default_factory=set)
    lookups: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    field: str | None = None  # the expression is just this field of the current item


_CONSTANT_NAMES = {"true": True, "false": False, "null": None}
_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
_CMP_SYMBOLS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}


def compile_expr(
    source: str, lookups: Mapping[str, Lookup] | None = None
) -> tuple[Compiled, ExprInfo]:
    """One function of one expression, given the scope; ``lookups`` (the mapping's tables)
    make the static checks more precise."""
    text = source.strip()
    body = _parse(text, source)
    info = ExprInfo()
    if isinstance(body, ast.Name) and body.id not in _ROOTS:
        info.field = body.id
    ns = Namespace()
    code = _Compiler(info, text, ns, Names(), lookups).compile(body)
    fn: Compiled = ns.define(f"def _expr(s):\n    item = s.item\n    return {code}\n", "_expr")
    return fn, info


def expr_source(source: str, ns: Namespace, names: Names) -> str:
    """The Python source of an expression that :func:`compile_expr` has already accepted, for
    a function generated around it; its constants are bound in ``ns``."""
    text = source.strip()
    return _Compiler(ExprInfo(), text, ns, names, None).compile(_parse(text, source))


def _parse(text: str, source: str) -> ast.expr:
    try:
        with warnings.catch_warnings():
            # '\.' in a regex literal: keep the backslash, as Python does, without a warning.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error in {source!r}: {exc.msg}") from None
    return tree.body


@dataclass(frozen=True)
class Names:
    """How generated code refers to what an expression sees. Every one is an identifier or
    attribute path that our code generators chose, never text from a mapping."""

    item: str = "item"
    root: str = "s.root"
    meta: str = "s.meta"
    lookups: str = "s.context.lookups"
    resolver: str = "s.context.resolver"
    get: str | None = None  # a function reading a key of the item, when the code binds one
    meta_get: str | None = None  # the same for meta


class Namespace:
    """The globals of generated code: the runtime helpers, no builtins but ``type``, ``dict``
    and ``isinstance``, and every value of the mapping, bound under a name we make up."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = dict(_RUNTIME)
        self._n = 0

    def const(self, value: Any) -> str:
        self._n += 1
        name = f"_c{self._n}"
        self.values[name] = value
        return name

    def temp(self, prefix: str = "_t") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def define(self, source: str, name: str, filename: str = "<mapping expression>") -> Any:
        code = compile(source, filename, "exec")
        exec(code, self.values)
        return self.values[name]


class _Compiler:
    """Turns a checked syntax tree into Python source.

    Only this class writes the source, from node types it allows: user text never becomes
    code. Every value from the expression (field names, literals) is bound as a constant of
    the namespace, so the source holds nothing but our own identifiers."""

    def __init__(
        self,
        info: ExprInfo,
        text: str,
        ns: Namespace,
        names: Names,
        lookups: Mapping[str, Lookup] | None,
    ) -> None:
        self.info = info
        self.text = text
        self.ns = ns
        self.names = names
        self.lookups = lookups or {}

    def const(self, value: Any) -> str:
        return self.ns.const(value)

    def compile(self, node: ast.expr) -> str:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ExprError(f"{_describe(node)} is not allowed in a mapping expression")
        result: str = method(node)
        return result

    # literals
    def _Constant(self, node: ast.Constant) -> str:
        value: Any = node.value
        if isinstance(value, float):
            # Exact, as written: 19.90 stays 19.90 (a float would make it 19.9).
            written = ast.get_source_segment(self.text, node)
            value = Decimal(written.replace("_", "")) if written else Decimal(repr(value))
        if not isinstance(value, str | int | Decimal | bool | type(None)):
            raise ExprError(f"literal {value!r} is not allowed")
        if value is None or isinstance(value, bool):
            return repr(value)
        return self.const(value)

    def _List(self, node: ast.List) -> str:
        return "[" + ", ".join(self.compile(e) for e in node.elts) + "]"

    def _Dict(self, node: ast.Dict) -> str:
        if any(k is None for k in node.keys):
            raise ExprError("'**' is not allowed in an object literal")
        pairs = [
            f"{self.compile(k)}: {self.compile(v)}"
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        ]
        return "{" + ", ".join(pairs) + "}"

    def _JoinedStr(self, node: ast.JoinedStr) -> str:
        parts: list[str] = []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                if v.format_spec is not None or v.conversion != -1:
                    raise ExprError("format specs are not supported in f-strings; use functions")
                parts.append(f"_text({self.compile(v.value)})")
            else:
                parts.append(self.compile(v))
        return "''.join((" + ", ".join(parts) + ",))"

    # paths
    def _Name(self, node: ast.Name) -> str:
        name = node.id
        if name in _CONSTANT_NAMES:
            return repr(_CONSTANT_NAMES[name])
        self.info.paths.append(name)
        if name == "root":
            return self.names.root
        if name == "item":
            return self.names.item
        if name == "meta":
            return self.names.meta
        key = self.const(name)
        if self.names.get is not None:
            return f"{self.names.get}({key})"
        item = self.names.item
        return f"({item}.get({key}) if type({item}) is dict else _get({item}, {key}))"

    def _Attribute(self, node: ast.Attribute) -> str:
        keys = _dotted(node)
        if keys is not None:
            self.info.paths.append(".".join(keys))
            if self.names.get is not None:
                first = f"{self.names.get}({self.const(keys[0])})"
                return f"_walk({first}, {self.const(keys[1:])})"
            return f"_walk({self.names.item}, {self.const(keys)})"
        key = self.const(node.attr)
        if self.names.meta_get is not None and _is_name(node.value, "meta"):
            return f"{self.names.meta_get}({key})"
        return f"_get({self.compile(node.value)}, {key})"

    def _Subscript(self, node: ast.Subscript) -> str:
        if isinstance(node.slice, ast.Slice):
            raise ExprError("slices are not supported; use functions such as first()")
        return f"_index({self.compile(node.value)}, {self.compile(node.slice)})"

    # operators
    def _BinOp(self, node: ast.BinOp) -> str:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed")
        symbol = _SYMBOLS[type(node.op)]
        for side in (node.left, node.right):
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                try:
                    to_decimal(side.value)
                except MappingFunctionError:
                    hint = " (to join text use concat() or an f-string)" if symbol == "+" else ""
                    raise ExprError(
                        f"{side.value!r} is text, not a number: it cannot take {symbol}{hint}"
                    ) from None
        left, right = self.compile(node.left), self.compile(node.right)
        return f"_arith({self.const(op)}, {self.const(symbol)}, {left}, {right})"

    def _UnaryOp(self, node: ast.UnaryOp) -> str:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return f"(not {operand})"
        if isinstance(node.op, ast.USub):
            return f"_neg({operand})"
        if isinstance(node.op, ast.UAdd):
            return f"_pos({operand})"
        raise ExprError("operator ~ is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> str:
        word = " and " if isinstance(node.op, ast.And) else " or "
        return "(" + word.join(self.compile(v) for v in node.values) + ")"

    def _Compare(self, node: ast.Compare) -> str:
        left = self.compile(node.left)
        before = node.left
        steps = []
        for op, comp in zip(node.ops, node.comparators, strict=True):
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise ExprError(f"comparison {type(op).__name__} is not allowed; use == or !=")
            self._check_kinds(before, op, comp)
            right = self.compile(comp)
            t = ""
            if len(node.ops) > 1:  # a chain: each middle operand is computed once
                t = self.ns.temp()
                right = f"({t} := {right})"
            if isinstance(op, ast.Eq):
                steps.append(f"_eq({left}, {right})")
            elif isinstance(op, ast.NotEq):
                steps.append(f"(not _eq({left}, {right}))")
            else:
                steps.append(f"_compare({self.const(fn)}, {left}, {right})")
            left, before = t, comp
        return "(" + " and ".join(steps) + ")"

    def _check_kinds(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> None:
        """Text against a number, when both types are known here, is refused now: it would
        fail (ordering) or never be equal (``==``) for every event."""
        if isinstance(op, ast.In | ast.NotIn):
            return
        kinds = {
            types.infer_node(left, self.lookups).kind,
            types.infer_node(right, self.lookups).kind,
        }
        if kinds == {types.TEXT, types.NUMBER}:
            shown = (
                ast.get_source_segment(self.text, left),
                ast.get_source_segment(self.text, right),
            )
            raise ExprError(
                f"cannot compare text with a number ({shown[0]} {_CMP_SYMBOLS[type(op)]} "
                f"{shown[1]}); convert one side first, e.g. decimal(x) or str(x)"
            )

    def _IfExp(self, node: ast.IfExp) -> str:
        test, body, orelse = (
            self.compile(node.test),
            self.compile(node.body),
            self.compile(node.orelse),
        )
        return f"({body} if {test} else {orelse})"

    # calls
    def _Call(self, node: ast.Call) -> str:
        if not isinstance(node.func, ast.Name):
            raise ExprError("only functions can be called, e.g. lower(email)")
        name = node.func.id
        fn: Function | None = FUNCTIONS.get(name)
        if fn is None:
            raise ExprError(f"unknown function {name}()")
        if node.keywords:
            raise ExprError(f"{name}() takes positional arguments only")
        n = len(node.args)
        if n < fn.min_args or (fn.max_args is not None and n > fn.max_args):
            raise ExprError(f"{name}() takes {fn.arity_text()}, got {n}")
        self.info.functions.add(name)
        if fn.lookup_table_arg and node.args and isinstance(node.args[0], ast.Constant):
            self.info.lookups.add(str(node.args[0].value))
        if name in ("golden_id", "external_id") and isinstance(node.args[0], ast.Constant):
            entity = node.args[0].value
            if entity not in ENTITIES:
                raise ExprError(
                    f"{name}(): unknown entity {entity!r} (entities: {', '.join(ENTITIES)})"
                )
        args = [self.compile(a) for a in node.args]
        if name in ("coalesce", "default"):
            # lazy: later arguments run only when the earlier ones are null or empty
            out = "None"
            for arg in reversed(args):
                t = self.ns.temp()
                out = f"({t} if ({t} := {arg}) is not None and {t} != '' else {out})"
            return out
        impl = self.const(fn.impl)
        if fn.context == "lookups":
            args.insert(0, self.names.lookups)
        elif fn.context == "resolver":
            args.insert(0, self.names.resolver)
        return f"{impl}({', '.join(args)})"


_ROOTS = frozenset({"root", "item", "meta", *_CONSTANT_NAMES})


def _dotted(node: ast.Attribute) -> tuple[str, ...] | None:
    """``a.b.c`` as ('a', 'b', 'c') when it starts at a plain field of the current item."""
    keys: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        keys.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name) or cur.id in _ROOTS:
        return None
    keys.append(cur.id)
    return tuple(reversed(keys))


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda",
        "ListComp": "a comprehension",
        "GeneratorExp": "a generator",
        "NamedExpr": "':='",
        "Starred": "'*'",
        "Await": "await",
    }
    return names.get(type(node).__name__, type(node).__name__)


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:  # the common case, without an ABC check
        return obj.get(key)
    if isinstance(obj, Mapping):
        return obj.get(key)
    return None


def _index(obj: Any, key: Any) -> Any:
    if obj is None:
        return None
    if isinstance(obj, list):
        if isinstance(key, Decimal):
            key = int(key)
        if not isinstance(key, int) or isinstance(key, bool):
            return None
        return obj[key] if -len(obj) <= key < len(obj) else None
    if isinstance(obj, Mapping):
        return obj.get(key if isinstance(key, str) else str(key))
    return None


def _cmpable(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return Decimal(str(v))
    return v


_SYMBOLS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Mod: "%",
    ast.FloorDiv: "//",
}


def _operand(v: Any, symbol: str) -> Decimal:
    """Arithmetic is on exact decimals only; numeric text ("4.50") counts as a number.
    ``+`` never joins text: that is what concat() and f-strings are for."""
    if isinstance(v, str):
        try:
            return to_decimal(v)
        except MappingFunctionError:
            hint = "; to join text use concat(a, b) or f'{a}{b}'" if symbol == "+" else ""
            raise MappingFunctionError(
                f"{v!r} is not a number, so it cannot take {symbol}{hint}"
            ) from None
    return to_decimal(v)


def _kind(v: Any) -> str:
    if isinstance(v, str):
        return "text"
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        return "number"
    return type(v).__name__


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


# What generated expression functions may call (their whole namespace, with their constants).


def _walk(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if type(value) is dict:
            value = value.get(key)
        elif isinstance(value, Mapping):
            value = value.get(key)
        else:
            return None
    return value


def _arith(op: Callable[[Any, Any], Any], symbol: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    try:
        return op(_operand(a, symbol), _operand(b, symbol))
    except (DivisionByZero, InvalidOperation, ZeroDivisionError):
        if to_decimal(b) == 0:
            raise MappingFunctionError("division by zero") from None
        raise


def _neg(v: Any) -> Any:
    return None if v is None else -to_decimal(v)


def _pos(v: Any) -> Any:
    return None if v is None else to_decimal(v)


def _compare(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> bool:
    try:
        if type(a) is type(b) and type(a) is not float:  # nothing to convert
            return bool(fn(a, b))
        return bool(fn(_cmpable(a), _cmpable(b)))
    except TypeError:
        if a is None or b is None:
            return False  # a missing value is never greater or smaller
        raise _incomparable(a, b) from None


def _eq(a: Any, b: Any) -> bool:
    """``==``: numbers by value whatever their form; text against a number is an error,
    as for ordering, since it would be false for every event (``'1' == 1``)."""
    if type(a) is type(b):
        return bool(a == b)
    if (_is_text(a) and _is_number(b)) or (_is_text(b) and _is_number(a)):
        raise _incomparable(a, b)
    return bool(_cmpable(a) == _cmpable(b))


def _is_text(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _incomparable(a: Any, b: Any) -> MappingFunctionError:
    return MappingFunctionError(
        f"cannot compare {_kind(a)} {a!r} with {_kind(b)} {b!r}; convert one "
        "side first, e.g. decimal(x) or str(x)"
    )


def json_ready(value: Any) -> Any:
    """JSON-ready: decimals as exact strings, dates as ISO 8601, all the way down."""
    kind = type(value)
    if kind is Decimal:
        return format(value, "f")
    if kind is list:
        return [json_ready(v) for v in value]
    if kind is dict:
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _none(_key: Any) -> None:
    return None


def getter(obj: Any) -> Callable[[Any], Any]:
    """What reads a key of ``obj``: its ``get`` if it is an object, else always null."""
    if isinstance(obj, Mapping):
        return obj.get
    return _none


_RUNTIME: dict[str, Any] = {
    "__builtins__": {
        "type": type,
        "dict": dict,
        "list": list,
        "str": str,
        "isinstance": isinstance,
    },
    "_get": _get,
    "_walk": _walk,
    "_index": _index,
    "_arith": _arith,
    "_neg": _neg,
    "_pos": _pos,
    "_compare": _compare,
    "_eq": _eq,
    "_text": _text,
    "_out": json_ready,
    "_getter": getter,
}
