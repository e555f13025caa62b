"""Mapping files: loaded, checked and compiled once; applied per record.

A mapping file (``mappings/<name>.yaml``)::

    description: Shopify orders/create -> canonical order
    source: {connector: shopify, event: orders/create}
    target: {entity: order}            # or {model: Address} for a reusable fragment
    when: "financial_status != 'voided'"   # optional: events for which it is false are dropped
    lookups:
      order_status:
        values: {paid: paid, pending: pending}
        default: pending               # omit to fail on unknown values
    fields:
      id: golden_id('order', meta.connection, id)
      number: name
      customer:                        # a nested object
        email: lower(trim(customer.email))
      billing_address: {use: shopify/address, from: billing_address}   # reuse a fragment
      lines:
        each: line_items               # map every element...
        where: quantity > 0            # ...that passes this filter
        fields: {sku: sku, quantity: str(quantity)}
      note: {expr: note, default: ''}  # an expression with a fallback
      channel: {const: web}            # a literal string
      tier: {if: "decimal(total_price) > 1000", then: {const: gold}, else: {const: standard}}

Fields whose value is ``null`` are left out of the output.

Loading checks a file and builds its plan (:mod:`hub.mapping.plan`). Each event is mapped by
one Python function generated for the whole mapping, its fragments inlined
(:mod:`hub.mapping.codegen`); when that function fails, the same input is mapped again by the
closures of :mod:`hub.mapping.closures`, which say exactly where and why.
"""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hub import canonical
from hub.errors import ConfigError, MappingFailed, Problem
from hub.yamlfile import Loc, YamlDoc, format_loc, load_yaml

from . import closures, codegen, types
from .expr import ExprError, Lookup, MappingContext, Scope, compile_expr
from .functions import str_
from .plan import Const, Default, Each, Expr, Field, If, Obj, Plan, Seq, Use

RESERVED = {
    "const",
    "expr",
    "default",
    "each",
    "where",
    "fields",
    "value",
    "use",
    "from",
    "if",
    "then",
    "else",
}
TOP_KEYS = {"description", "source", "target", "when", "lookups", "fields"}


@dataclass
class CompiledMapping:
    name: str
    version: str
    file: str
    description: str
    source_connector: str | None
    source_event: str | None
    target_entity: str | None
    target_model: type[BaseModel] | None
    lookups: dict[str, Lookup]
    uses: list[tuple[str, Loc]]
    when_plan: Expr | Const | None
    plan: Obj
    doc: YamlDoc = field(repr=False)
    set_: MappingSet | None = field(default=None, repr=False)
    target_format: str | None = None  # an outbound mapping's destination format
    source_entity: str | None = None  # an outbound mapping reads this canonical entity
    # every event type it maps (source.event: one, or a list); source_event is the first
    source_events: tuple[str, ...] = ()
    when: closures.Node | None = field(init=False, repr=False)
    build: closures.Node = field(init=False, repr=False)
    _fast: codegen.MapFunction | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.when = None
        if self.when_plan is not None:
            self.when = closures.build(self.when_plan, self.name)
        self.build = closures.build(self.plan, self.name)

    def apply(self, payload: Any, meta: Mapping[str, Any], resolver: Any) -> dict[str, Any] | None:
        """The mapped output, or ``None`` if the mapping's ``when`` drops this event."""
        try:
            return self.apply_fast(payload, meta, resolver)
        except Exception:
            # The generated function does not say where it failed: map the same input again
            # with the closures, which name the field, list index and expression. Resolvers
            # are idempotent (the same ids again), so nothing changes by asking twice.
            pass
        return self.apply_precise(payload, meta, resolver)

    def apply_fast(
        self, payload: Any, meta: Mapping[str, Any], resolver: Any
    ) -> dict[str, Any] | None:
        """The generated function alone: the same output as :meth:`apply_precise` for every
        input, and a failure where it fails, but one that says nothing of where or why."""
        fast = self._fast if self._fast is not None else self.generate()
        return fast(payload, meta, resolver)

    def apply_precise(
        self, payload: Any, meta: Mapping[str, Any], resolver: Any
    ) -> dict[str, Any] | None:
        """What :meth:`apply` gives, computed by the closures: slower, and every failure is a
        :class:`MappingFailed` naming the field, list index and expression."""
        ctx = MappingContext(self.lookups, resolver, self.name, self.set_)
        scope = Scope(payload, payload, meta, ctx)
        if self.when is not None and not self.when(scope):
            return None
        result = self.build(scope)
        if not isinstance(result, dict):
            raise MappingFailed(self.name, "(root)", None, "the mapping did not produce an object")
        return result

    def generate(self) -> codegen.MapFunction:
        """Generate the mapping's function (done once; ``load_mappings`` does it up front)."""
        self._fast = codegen.generate(self)
        return self._fast


class MappingSet:
    """All mapping files of a folder, compiled together so ``use:`` can refer across files."""

    def __init__(self, directory: Path, mappings: dict[str, CompiledMapping]) -> None:
        self.directory = directory
        self.mappings = mappings

    def get(self, name: str) -> CompiledMapping | None:
        return self.mappings.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.mappings


NOT_MAPPINGS = ("tests", "lookups")  # folders of test cases and shared lookup tables


def mapping_files(directory: Path) -> dict[str, Path]:
    files = {}
    for path in yaml_files(directory):
        rel = path.relative_to(directory)
        if rel.parts[0] not in NOT_MAPPINGS:
            files[rel.with_suffix("").as_posix()] = path
    return files


def yaml_files(directory: Path) -> list[Path]:
    """Every YAML file below ``directory``: what hot reload watches."""
    return sorted(p for p in directory.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_mappings(directory: Path) -> MappingSet:
    """Load, check and compile every mapping below ``directory``; all problems at once."""
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), "", "mappings folder does not exist")])
    problems: list[Problem] = []
    compiled: dict[str, CompiledMapping] = {}
    builders: list[_Builder] = []
    files = mapping_files(directory)
    for name, path in files.items():
        try:
            builder = _builder(name, path)
        except ConfigError as exc:  # not even YAML
            problems.extend(exc.problems)
            continue
        builders.append(builder)
        try:
            compiled[name] = builder.build()
        except ConfigError as exc:
            problems.extend(exc.problems)
    # A file's use: are checked whether or not the rest of it compiled, so that every problem
    # shows at once. A used file that exists but has problems of its own is not reported
    # again here: its own problems are in the list.
    for b in builders:
        for used, loc in b.uses:
            target = compiled.get(used)
            if used not in files:
                problems.append(b.doc.problem(loc, f"unknown mapping {used!r} in 'use'"))
            elif target is not None and target.target_entity is not None:
                problems.append(
                    b.doc.problem(loc, f"mapping {used!r} is an entity mapping, not a fragment")
                )
    if problems:
        raise ConfigError(problems)
    mset = MappingSet(directory, compiled)
    for m in compiled.values():
        m.set_ = mset
    for m in compiled.values():
        m.generate()
    return mset


def compile_mapping(name: str, path: Path, text: str | None = None) -> CompiledMapping:
    return _builder(name, path, text).build()


def _builder(name: str, path: Path, text: str | None = None) -> _Builder:
    source_text = path.read_text(encoding="utf-8") if text is None else text
    doc = load_yaml(path, source_text)
    root = path.parents[max(0, len(name.split("/")) - 1)]  # the mappings folder
    return _Builder(name, doc, source_text, root)


class _Builder:
    def __init__(self, name: str, doc: YamlDoc, text: str, root: Path) -> None:
        self.name = name
        self.doc = doc
        self.root = root
        self._hash = hashlib.sha256(text.encode())
        self.problems: list[Problem] = []
        self.lookups: dict[str, Lookup] = {}
        self.uses: list[tuple[str, Loc]] = []
        self.used_lookups: list[tuple[str, Loc]] = []
        self.mset: MappingSet | None = None

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def build(self) -> CompiledMapping:
        data = self.doc.data
        if not isinstance(data, dict):
            raise ConfigError([self.doc.problem((), "a mapping file must be a YAML mapping")])
        for key in data:
            if key not in TOP_KEYS:
                self.fail((key,), f"unknown key (expected one of: {', '.join(sorted(TOP_KEYS))})")
        source = data.get("source") or {}
        target = data.get("target")
        entity: str | None = None
        model: type[BaseModel] | None = None
        if not isinstance(target, dict) or len(set(target) & {"entity", "model", "format"}) != 1:
            self.fail(
                ("target",),
                "target must be one of {entity: customer|product|order|inventory} (a canonical "
                "entity), {model: Address} (a reusable fragment) or {format: NAME} "
                "(a destination's format)",
            )
        elif "format" in target:
            pass
        elif "entity" in target:
            entity = str(target["entity"])
            model = canonical.ENTITY_MODELS.get(entity)
            if model is None:
                self.fail(
                    ("target", "entity"),
                    f"unknown entity {entity!r} (known: {', '.join(canonical.ENTITY_MODELS)})",
                )
        else:
            found = canonical.MODELS.get(str(target["model"]))
            if found is not None:
                model = found
            else:
                self.fail(
                    ("target", "model"),
                    f"unknown canonical model {target['model']!r} "
                    f"(known: {', '.join(canonical.MODELS)})",
                )
        if not isinstance(source, dict):
            self.fail(("source",), "source must be {connector: NAME, event: TYPE}")
            source = {}
        raw_events = source.get("event")
        events: tuple[str, ...] = ()
        if isinstance(raw_events, str) and raw_events:
            events = (raw_events,)
        elif (
            isinstance(raw_events, list)
            and raw_events
            and all(isinstance(e, str) and e for e in raw_events)
        ):
            events = tuple(dict.fromkeys(raw_events))
        elif raw_events is not None:
            self.fail(
                ("source", "event"),
                "event must be an event type, or a list of them (the same payload, e.g. "
                "[orders/create, orders/updated])",
            )

        for tname, spec in (data.get("lookups") or {}).items():
            loc: Loc = ("lookups", tname)
            if isinstance(spec, dict) and set(spec) == {"file"}:
                spec = self._lookup_file(str(spec["file"]), loc)
                if spec is None:
                    continue
            if not isinstance(spec, dict) or not isinstance(spec.get("values"), dict):
                self.fail(loc, "a lookup table needs 'values: {key: value, ...}'")
                continue
            extra = set(spec) - {"values", "default", "description"}
            if extra:
                self.fail(loc, f"unknown key(s) {', '.join(sorted(extra))}")
            self.lookups[str(tname)] = Lookup(
                str(tname),
                {_key(k): _plain(v) for k, v in spec["values"].items()},
                _plain(spec.get("default")),
                "default" in spec,
            )

        when = None
        if data.get("when") is not None:
            when = self.expr(data["when"], ("when",), "when")
        fields_spec = data.get("fields")
        plan = Obj(())
        if not isinstance(fields_spec, dict) or not fields_spec:
            self.fail(("fields",), "a mapping needs 'fields'")
        else:
            plan = self.object(fields_spec, ("fields",), "", model)
        for tname, loc in self.used_lookups:
            if tname not in self.lookups:
                self.fail(
                    loc,
                    f"unknown lookup table {tname!r} "
                    f"(declared: {', '.join(self.lookups) or 'none'})",
                )
        if self.problems:
            raise ConfigError(self.problems)
        return CompiledMapping(
            name=self.name,
            version=self._hash.hexdigest()[:12],
            file=self.doc.file,
            description=str(data.get("description") or ""),
            source_connector=source.get("connector"),
            source_event=events[0] if events else None,
            source_events=events,
            target_entity=entity,
            target_model=model,
            lookups=self.lookups,
            uses=self.uses,
            when_plan=when,
            plan=plan,
            doc=self.doc,
            target_format=str(target["format"])
            if isinstance(target, dict) and "format" in target
            else None,
            source_entity=str(source["entity"]) if "entity" in source else None,
        )

    # plans -------------------------------------------------------------------------------------

    def node(self, spec: Any, loc: Loc, path: str, model: Any) -> Plan:
        if isinstance(spec, str):
            return self.expr(spec, loc, path)
        if spec is None or isinstance(spec, bool | int | float | Decimal | date):
            return Const(_plain(spec))
        if isinstance(spec, list):
            return Seq(
                tuple(
                    self.node(v, (*loc, i), f"{path}[{i}]", _item_model(model))
                    for i, v in enumerate(spec)
                )
            )
        if not isinstance(spec, dict):
            self.fail(loc, f"unsupported value {spec!r}")
            return Const(None)
        keys = set(spec)
        if "const" in keys:
            self._only(spec, loc, {"const"})
            return Const(_plain(spec["const"]))
        if "each" in keys:
            return self.each(spec, loc, path, model)
        if "if" in keys:
            self._only(spec, loc, {"if", "then", "else"})
            return If(
                self.expr(spec["if"], (*loc, "if"), path),
                self.node(spec.get("then"), (*loc, "then"), path, model),
                self.node(spec.get("else"), (*loc, "else"), path, model),
            )
        if "use" in keys:
            self._only(spec, loc, {"use", "from"})
            return self.use(spec, loc, path)
        if "expr" in keys:
            self._only(spec, loc, {"expr", "default"})
            return Default(
                self.expr(spec["expr"], (*loc, "expr"), path), _plain(spec.get("default"))
            )
        if "fields" in keys:
            self._only(spec, loc, {"fields"})
            return self.object(spec["fields"], (*loc, "fields"), path, model)
        return self.object(spec, loc, path, model)

    def object(self, spec: Any, loc: Loc, path: str, model: Any) -> Obj:
        if not isinstance(spec, dict):
            self.fail(loc, "expected an object of fields")
            return Obj(())
        fields_info = _model_fields(model)
        if fields_info is not None:
            for key in spec:
                if key not in fields_info:
                    self.fail(
                        (*loc, key),
                        f"{model.__name__} has no field {key!r} (fields: {', '.join(fields_info)})",
                    )
            for fname, (required, _sub) in fields_info.items():
                if required and fname not in spec:
                    self.fail(loc, f"required field {fname!r} of {model.__name__} is never set")
        fields = []
        for key, sub in spec.items():
            sub_model = fields_info.get(key, (False, None))[1] if fields_info else None
            field_path = f"{path}.{key}" if path else str(key)
            if fields_info is not None and key in fields_info:
                self._check_type(model, str(key), sub, (*loc, key))
            plan = self.node(sub, (*loc, key), field_path, sub_model)
            fields.append(Field(str(key), plan, field_path, _ready(sub)))
        return Obj(tuple(fields))

    def each(self, spec: dict[str, Any], loc: Loc, path: str, model: Any) -> Plan:
        self._only(spec, loc, {"each", "where", "fields", "value", "use"})
        items = self.expr(spec["each"], (*loc, "each"), path)
        where = self.expr(spec["where"], (*loc, "where"), path) if "where" in spec else None
        item_model = _item_model(model)
        body: Plan
        if "fields" in spec:
            body = self.object(spec["fields"], (*loc, "fields"), path, item_model)
        elif "value" in spec:
            body = self.node(spec["value"], (*loc, "value"), path, item_model)
        elif "use" in spec:
            body = self.use({"use": spec["use"]}, loc, path)
        else:
            self.fail(
                loc, "'each' needs 'fields', 'value' or 'use' to say what each element becomes"
            )
            return Const(None)
        return Each(items, where, body, "value" not in spec, path, str(spec["each"]))

    def use(self, spec: dict[str, Any], loc: Loc, path: str) -> Use:
        name = str(spec["use"])
        self.uses.append((name, (*loc, "use")))
        source = self.expr(spec["from"], (*loc, "from"), path) if "from" in spec else None
        return Use(name, source, path)

    def expr(self, source: Any, loc: Loc, path: str) -> Expr | Const:
        if not isinstance(source, str):
            return Const(_plain(source))
        try:
            fn, info = compile_expr(source, self.lookups)
        except ExprError as exc:
            self.fail(loc, str(exc))
            return Const(None)
        for tname in info.lookups:
            self.used_lookups.append((tname, loc))
        return Expr(source, fn, path or format_loc(loc))

    def _lookup_file(self, file: str, loc: Loc) -> dict[str, Any] | None:
        """A lookup table shared by several mappings, in ``mappings/lookups/``."""
        path = (self.root / file).resolve()
        if not path.is_relative_to(self.root.resolve()):
            self.fail((*loc, "file"), f"{file} is outside the mappings folder")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.fail((*loc, "file"), f"cannot read lookup table {file}: {exc.strerror}")
            return None
        self._hash.update(text.encode())  # the mapping's version covers its tables
        try:
            table = load_yaml(path, text).data
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None
        if not isinstance(table, dict) or not isinstance(table.get("values"), dict):
            self.fail((*loc, "file"), f"{file} must hold 'values: {{key: value, ...}}'")
            return None
        return table

    def _check_type(self, model: Any, key: str, spec: Any, loc: Loc) -> None:
        """Refuse, before any event runs, an expression that can never fit its field."""
        want = types.expected(model.model_fields[key].annotation)
        if want is None:
            return
        if isinstance(spec, str):
            got = types.infer(spec, self.lookups)
        elif isinstance(spec, dict) and set(spec) == {"const"}:
            value = spec["const"]
            got = (
                types.Inferred(types.TEXT, frozenset({value}))
                if isinstance(value, str)
                else types.Inferred(types.ANY)
            )
        else:
            return
        reason = types.mismatch(got, want)
        if reason is not None:
            self.fail(loc, f"{model.__name__}.{key}: {reason}")

    def _only(self, spec: dict[str, Any], loc: Loc, allowed: set[str]) -> None:
        extra = set(spec) - allowed
        if extra:
            self.fail(
                loc,
                f"{', '.join(sorted(extra))} cannot be combined with "
                f"{', '.join(sorted(allowed & set(spec)))}",
            )


def _ready(spec: Any) -> bool:
    """Whether the node built from ``spec`` already gives JSON-ready values (objects, lists
    and iterations convert their own parts), so its result need not be walked again."""
    if isinstance(spec, list):
        return True
    if not isinstance(spec, dict):
        return False
    if spec.keys() & {"const", "expr", "if"}:
        return False
    return "value" not in spec


def _key(value: Any) -> str:
    """Lookup keys compare as the text lookup() makes of its input: true, 3, 4.50."""
    text: str = str_(value) if value is not None else "null"
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _model_fields(model: Any) -> dict[str, tuple[bool, Any]] | None:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return {
        name: (f.is_required(), _unwrap(f.annotation)) for name, f in model.model_fields.items()
    }


def _unwrap(annotation: Any) -> Any:
    """The model inside ``Model | None`` or ``list[Model]`` (kept as ('list', Model))."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is list and args:
        inner = _unwrap(args[0])
        return ("list", inner) if inner is not None else None
    if args and origin is not None and origin is not list:
        for a in args:
            found = _unwrap(a)
            if found is not None:
                return found
    return None


def _item_model(model: Any) -> Any:
    if isinstance(model, tuple) and model[0] == "list":
        return model[1]
    return None
