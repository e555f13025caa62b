"""The precise path: a mapping's plan as a tree of closures that name every failure.

A failure raises :class:`~hub.errors.MappingFailed` with the mapping, the output field with its
list indexes (``lines[2].total``), the expression and the reason, prefixed with the fragment
it happened in. Events are mapped by the generated function of :mod:`hub.mapping.codegen`;
these closures run only when that function fails, on the same input, to say where and why.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import InvalidOperation
from typing import TYPE_CHECKING, Any

from hub.errors import MappingFailed

from .expr import MappingContext, Scope, json_ready
from .functions import MappingFunctionError
from .plan import Const, Each, Expr, Field, If, Obj, Plan, Seq, Use

if TYPE_CHECKING:
    from .engine import CompiledMapping

RUNTIME_ERRORS = (
    MappingFunctionError,
    ArithmeticError,
    InvalidOperation,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
)

Node = Callable[[Scope], Any]


def build(plan: Plan, mapping: str) -> Node:
    """The closure computing ``plan`` in mapping ``mapping``."""
    if isinstance(plan, Expr):
        return _guard(plan, mapping)
    if isinstance(plan, Const):
        value = plan.value
        return lambda _s: value
    if isinstance(plan, Obj):
        return _object(plan.fields, mapping)
    if isinstance(plan, Seq):
        parts = [build(p, mapping) for p in plan.items]
        return lambda s: [json_ready(p(s)) for p in parts]
    if isinstance(plan, Each):
        return _each(plan, mapping)
    if isinstance(plan, Use):
        return _use(plan, mapping)
    if isinstance(plan, If):
        test, then, other = (build(p, mapping) for p in (plan.test, plan.then, plan.other))
        return lambda s: then(s) if test(s) else other(s)
    inner, fallback = build(plan.expr, mapping), plan.fallback
    return lambda s: fallback if (v := inner(s)) is None or v == "" else v


def _object(fields: tuple[Field, ...], mapping: str) -> Node:
    parts: list[tuple[str, Node, bool]] = []
    sources: dict[str, tuple[str, str]] = {}  # key -> (field path, expression)
    for f in fields:
        if isinstance(f.plan, Expr):
            # Plain expressions are guarded here, once per object, not per field.
            parts.append((f.key, f.plan.fn, f.ready))
            sources[f.key] = (f.path, f.plan.source)
        else:
            parts.append((f.key, build(f.plan, mapping), f.ready))

    def run(s: Scope) -> Any:
        out = {}
        key = ""
        try:
            for key, part, ready in parts:
                value = part(s)
                if value is not None:
                    out[key] = value if ready else json_ready(value)
        except MappingFailed:
            raise
        except RUNTIME_ERRORS as exc:
            field_path, source = sources.get(key, (key, ""))
            reason = str(exc) or type(exc).__name__
            raise MappingFailed(mapping, field_path, source or None, reason) from None
        return out

    return run


def _each(plan: Each, mapping: str) -> Node:
    items = build(plan.items, mapping)
    where = build(plan.where, mapping) if plan.where is not None else None
    body = build(plan.body, mapping)
    path, body_ready = plan.path, plan.body_ready

    def run(s: Scope) -> Any:
        seq = items(s)
        if seq is None:
            return None
        if not isinstance(seq, list):
            raise MappingFailed(
                mapping, path, plan.source, f"expected a list, got {type(seq).__name__}"
            )
        out = []
        for i, element in enumerate(seq):
            inner = Scope(element, s.root, s.meta, s.context)
            try:
                if where is not None and not where(inner):
                    continue
                value = body(inner)
            except MappingFailed as exc:
                rest = exc.field[len(path) :] if exc.field.startswith(path) else "." + exc.field
                raise MappingFailed(
                    mapping, f"{path}[{i}]{rest}", exc.input_path, exc.reason
                ) from None
            if value is not None:
                out.append(value if body_ready else json_ready(value))
        return out

    return run


def _use(plan: Use, mapping: str) -> Node:
    name, path = plan.name, plan.path
    source = build(plan.source, mapping) if plan.source is not None else None
    holder: dict[str, CompiledMapping] = {}

    def run(s: Scope) -> Any:
        target = holder.get("m")
        if target is None:
            mset = s.context.mappings
            found = mset.get(name) if mset is not None else None
            if found is None:
                raise MappingFailed(mapping, path, None, f"mapping {name!r} is not loaded")
            target = holder.setdefault("m", found)
        value = source(s) if source is not None else s.item
        if value is None:
            return None
        ctx = MappingContext(target.lookups, s.context.resolver, target.name, s.context.mappings)
        inner = Scope(value, s.root, s.meta, ctx)
        try:
            return target.build(inner)
        except MappingFailed as exc:
            raise MappingFailed(
                mapping, f"{path}.{exc.field}", exc.input_path, f"(in {name}) {exc.reason}"
            ) from None

    return run


def _guard(expr: Expr, mapping: str) -> Node:
    fn, where, source = expr.fn, expr.where, expr.source

    def run(s: Scope) -> Any:
        try:
            return fn(s)
        except MappingFailed:
            raise
        except RUNTIME_ERRORS as exc:
            raise MappingFailed(mapping, where, source, str(exc) or type(exc).__name__) from None

    return run
