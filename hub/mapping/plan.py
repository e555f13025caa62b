"""What a checked mapping file becomes before it is turned into code: a tree of plan nodes.

:mod:`hub.mapping.engine` checks a file and builds its plan. Two back ends run a plan:
:mod:`hub.mapping.codegen` makes one Python function of a whole mapping (the fast path, what
every event goes through) and :mod:`hub.mapping.closures` a tree of closures that names the
field, the list index and the expression of any failure (the precise path, run again on the
same input when the fast one fails). Both must give the same output for every input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .expr import Compiled


@dataclass(frozen=True, slots=True)
class Expr:
    """An expression as written, and its function alone (given a scope)."""

    source: str
    fn: Compiled
    where: str  # the field path a failure names


@dataclass(frozen=True, slots=True)
class Const:
    """A literal value (``{const: x}``, a YAML number, ``null``...)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    plan: Plan  # an Expr here was a plain string: the object names its failures itself
    path: str  # the output field path, e.g. ``lines.total``
    ready: bool  # the value is JSON-ready already: objects and lists convert their own parts


@dataclass(frozen=True, slots=True)
class Obj:
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class Seq:
    """A list written out in YAML: one value per element, ``null`` kept."""

    items: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class Each:
    items: Expr | Const
    where: Expr | Const | None
    body: Plan
    body_ready: bool
    path: str
    source: str  # the ``each`` expression, for "expected a list"


@dataclass(frozen=True, slots=True)
class Use:
    """A fragment (another mapping file) applied to ``source``, or to the current item."""

    name: str
    source: Expr | Const | None
    path: str


@dataclass(frozen=True, slots=True)
class If:
    test: Expr | Const
    then: Plan
    other: Plan


@dataclass(frozen=True, slots=True)
class Default:
    """``{expr: E, default: V}``: ``V`` when ``E`` is null or empty text."""

    expr: Expr | Const
    fallback: Any


Plan = Expr | Const | Obj | Seq | Each | Use | If | Default
