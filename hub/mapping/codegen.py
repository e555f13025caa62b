"""The fast path: one generated Python function per mapping.

The function takes ``(payload, meta, resolver)`` and gives the output object, or ``None`` when
``when`` drops the event. Objects, ``each``/``where``, ``use:`` fragments, ``const``/``if``/
``default`` and lookups are written out inline as statements, so an event costs no call per
field or per node. It gives the same output as the closures of :mod:`hub.mapping.closures` for
every input, and fails (with any exception) exactly where they fail; it does not say where:
``CompiledMapping.apply`` then runs the closures on the same input for the precise error.

The same safety rules as for single expressions (:mod:`hub.mapping.expr`) hold: the source is
written only from our templates and from identifiers we make up (``_c12``, ``_v3``); every value
from the mapping file (field names, literals, lookup tables) is bound as a constant of the
function's namespace, which has no builtins but ``type``, ``dict``, ``list`` and
``isinstance``. Nothing from the file is ever evaluated.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn

from .expr import Names, Namespace, expr_source
from .plan import Const, Default, Each, Expr, Field, If, Obj, Plan, Seq, Use

if TYPE_CHECKING:
    from .engine import CompiledMapping

MapFunction = Callable[[Any, Mapping[str, Any], Any], dict[str, Any] | None]

log = logging.getLogger(__name__)

MAX_INLINE_DEPTH = 8  # fragments inside fragments; deeper (or recursive) use: runs the closures

# functions whose result is text or null, so it needs no conversion to JSON
_TEXT_FUNCTIONS = frozenset(
    {
        "str",
        "money",
        "datetime_utc",
        "format_datetime",
        "date",
        "trim",
        "lower",
        "upper",
        "concat",
        "join",
        "replace",
        "extract",
        "pad_left",
        "pad_right",
        "truncate",
    }
)


class FastPathFailed(Exception):
    """The generated function cannot go on; the closures will say why."""


def _fail() -> NoReturn:
    raise FastPathFailed


def generate(mapping: CompiledMapping) -> MapFunction:
    """The mapping's function, ``(payload, meta, resolver) -> output or None``."""
    gen = _Generator(mapping)
    source = gen.source()
    try:
        fn: MapFunction = gen.ns.define(source, "_map", f"<mapping {mapping.name}>")
    except (SyntaxError, RecursionError) as exc:
        # Python's own limits (20 nested loops, 100 levels of indentation): only reached by
        # mappings nested far deeper than any real one. They run through the closures.
        log.warning(
            "mapping %s is nested too deeply for one generated function (%s); its events are "
            "mapped by the slower closures",
            mapping.name,
            exc.msg if isinstance(exc, SyntaxError) else exc,
        )
        return _closures_only
    return fn


def _closures_only(_payload: Any, _meta: Mapping[str, Any], _resolver: Any) -> NoReturn:
    raise FastPathFailed


def generated_source(mapping: CompiledMapping) -> str:
    """The source :func:`generate` runs (for reading, and for the tests)."""
    return _Generator(mapping).source()


@dataclass(frozen=True)
class _Where:
    """What generated code sees at one point: the current item, how to read its keys, the
    lookup tables of the mapping or fragment it is in, and the fragments being inlined."""

    item: str
    get: str
    lookups: str
    fragments: tuple[str, ...]


class _Generator:
    def __init__(self, mapping: CompiledMapping) -> None:
        self.mapping = mapping
        self.ns = Namespace()
        self.ns.values["_fail"] = _fail
        self.lines: list[str] = []

    def source(self) -> str:
        m = self.mapping
        at = _Where("root", "_g0", self.ns.const(m.lookups), (m.name,))
        self.emit(1, "_g0 = root.get if type(root) is dict else _getter(root)")
        self.emit(1, "_gm = meta.get if type(meta) is dict else _getter(meta)")
        if m.when_plan is not None:
            self.emit(1, f"if not {self.value(m.when_plan, at, 1)}:")
            self.emit(2, "return None")
        out = self.object(m.plan, at, 1)
        self.emit(1, f"return {out}")
        return "def _map(root, meta, resolver):\n" + "\n".join(self.lines) + "\n"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def var(self) -> str:
        return self.ns.temp("_v")

    # values: each returns an expression (often a variable) holding the plan's value ----------

    def value(self, plan: Plan, at: _Where, depth: int) -> str:
        if isinstance(plan, Expr):
            names = Names(at.item, "root", "meta", at.lookups, "resolver", at.get, "_gm")
            return expr_source(plan.source, self.ns, names)
        if isinstance(plan, Const):
            return self.const(plan.value)
        if isinstance(plan, Obj):
            return self.object(plan, at, depth)
        if isinstance(plan, Seq):
            parts = [self.ready(p, self.value(p, at, depth)) for p in plan.items]
            return "[" + ", ".join(parts) + "]"
        if isinstance(plan, Each):
            return self.each(plan, at, depth)
        if isinstance(plan, Use):
            return self.use(plan, at, depth)
        v = self.var()
        if isinstance(plan, If):
            self.emit(depth, f"if {self.value(plan.test, at, depth)}:")
            self.emit(depth + 1, f"{v} = {self.value(plan.then, at, depth + 1)}")
            self.emit(depth, "else:")
            self.emit(depth + 1, f"{v} = {self.value(plan.other, at, depth + 1)}")
            return v
        assert isinstance(plan, Default)
        self.emit(depth, f"{v} = {self.value(plan.expr, at, depth)}")
        self.emit(depth, f"if {v} is None or {v} == '':")
        self.emit(depth + 1, f"{v} = {self.const(plan.fallback)}")
        return v

    def const(self, value: Any) -> str:
        if value is None or isinstance(value, bool):
            return repr(value)
        # a list or object is shared by every run: whoever outputs it converts it to a copy
        return self.ns.const(value)

    def ready(self, plan: Plan, code: str) -> str:
        """``code``, converted to JSON unless the plan's value is known to need nothing."""
        if _converted(plan) or _gives_text(plan):
            return code
        if isinstance(plan, Const) and isinstance(plan.value, str | int | bool):
            return code
        return f"_out({code})"

    def object(self, plan: Obj, at: _Where, depth: int) -> str:
        out = self.var()
        self.emit(depth, f"{out} = {{}}")
        for f in plan.fields:
            self.field(out, f, at, depth)
        return out

    def field(self, out: str, f: Field, at: _Where, depth: int) -> None:
        if isinstance(f.plan, Const) and f.plan.value is None:
            return  # null: never written
        key = self.ns.const(f.key)
        code = self.value(f.plan, at, depth)
        if isinstance(f.plan, Obj | Seq):  # never null, converted already
            self.emit(depth, f"{out}[{key}] = {code}")
            return
        v = code
        if not code.isidentifier():
            v = self.var()
            self.emit(depth, f"{v} = {code}")
        self.emit(depth, f"if {v} is not None:")
        if f.ready or _gives_text(f.plan):
            self.emit(depth + 1, f"{out}[{key}] = {v}")
        else:
            self.emit(depth + 1, f"{out}[{key}] = {v} if type({v}) is str else _out({v})")

    def each(self, plan: Each, at: _Where, depth: int) -> str:
        seq, acc, element, get = self.var(), self.var(), self.var(), self.var()
        self.emit(depth, f"{seq} = {self.value(plan.items, at, depth)}")
        self.emit(depth, f"if {seq} is None:")
        self.emit(depth + 1, f"{acc} = None")
        self.emit(depth, "else:")
        d = depth + 1
        self.emit(d, f"if not isinstance({seq}, list):")
        self.emit(d + 1, "_fail()")
        self.emit(d, f"{acc} = []")
        self.emit(d, f"for {element} in {seq}:")
        d += 1
        self.emit(d, f"{get} = {element}.get if type({element}) is dict else _getter({element})")
        inner = replace(at, item=element, get=get)
        if plan.where is not None:
            self.emit(d, f"if not {self.value(plan.where, inner, d)}:")
            self.emit(d + 1, "continue")
        body = self.value(plan.body, inner, d)
        if isinstance(plan.body, Obj):
            self.emit(d, f"{acc}.append({body})")
            return acc
        v = self.var()
        self.emit(d, f"{v} = {body}")
        self.emit(d, f"if {v} is not None:")
        self.emit(d + 1, f"{acc}.append({v if plan.body_ready else self.ready(plan.body, v)})")
        return acc

    def use(self, plan: Use, at: _Where, depth: int) -> str:
        mset = self.mapping.set_
        target = mset.get(plan.name) if mset is not None else None
        if target is None or plan.name in at.fragments or len(at.fragments) > MAX_INLINE_DEPTH:
            # not loaded (the closures say so), or recursive: left to the closures
            self.emit(depth, "_fail()")
            return "None"
        src, result, get = self.var(), self.var(), self.var()
        if plan.source is None:
            self.emit(depth, f"{src} = {at.item}")
        else:
            self.emit(depth, f"{src} = {self.value(plan.source, at, depth)}")
        self.emit(depth, f"if {src} is None:")
        self.emit(depth + 1, f"{result} = None")
        self.emit(depth, "else:")
        d = depth + 1
        self.emit(d, f"{get} = {src}.get if type({src}) is dict else _getter({src})")
        inner = _Where(src, get, self.ns.const(target.lookups), (*at.fragments, target.name))
        self.emit(d, f"{result} = {self.object(target.plan, inner, d)}")
        return result


def _converted(plan: Plan) -> bool:
    """Whether the plan's value is JSON-ready already (objects and lists convert their parts)."""
    if isinstance(plan, Each):
        return plan.body_ready
    return isinstance(plan, Obj | Seq | Use)


def _gives_text(plan: Plan) -> bool:
    """Whether the plan's value is always text or null (so it needs no JSON conversion)."""
    if isinstance(plan, Const):
        return plan.value is None or isinstance(plan.value, str)
    if not isinstance(plan, Expr):
        return False
    node = ast.parse(plan.source.strip(), mode="eval").body
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _TEXT_FUNCTIONS
    )
