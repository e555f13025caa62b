"""YAML test cases for mappings (``mappings/tests/*.yaml``), run by ``hub mappings test``.

mapping: shopify/orders_create
cases:
  - name: documented orders/create payload
    meta: {connection: shop}          # what the mapping sees as meta.*
    input_file: ../../tests/fixtures/shopify/orders_create.json   # or input: {...}
    expect: {...}                     # the whole output, or
    expect_subset: {...}              # only these fields, or
    expect_error: "lookup table"      # a failure whose message contains this, or
    expect_dropped: true              # the mapping's `when` drops the event
    golden_ids: {"order/shop/1": ord_1}  # MDM stubs: fixed golden ids
    external_ids: {"order/shop/ord_1": "1"}  # crosswalk stubs: a system's id of a golden id
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from hub import exactjson
from hub.canonical import validate
from hub.errors import ConfigError, MappingFailed, ProcessingError
from hub.mdm import DeterministicResolver
from hub.yamlfile import safe_load

from .engine import CompiledMapping, MappingSet


@dataclass
class CaseResult:
    file: Path
    mapping: str
    name: str
    ok: bool
    detail: str = ""


class StubResolver(DeterministicResolver):
    """Golden ids from ``stubs`` (``entity/system/id``), else derived; external ids from
    ``external`` (``entity/system/golden id``), else none."""

    def __init__(self, stubs: dict[str, str], external: dict[str, str] | None = None) -> None:
        self.stubs = stubs
        self.external = external or {}

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        return self.stubs.get(f"{entity}/{system}/{external_id}") or super().golden_id(
            entity, system, external_id
        )

    def external_id(self, entity: str, system: str, golden_id: str) -> str | None:
        return self.external.get(f"{entity}/{system}/{golden_id}")


def case_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def run_file(mappings: MappingSet, file: Path) -> list[CaseResult]:

    doc = safe_load(file.read_text(encoding="utf-8")) or {}
    name = str(doc.get("mapping", ""))
    mapping = mappings.get(name)
    if mapping is None:
        return [CaseResult(file, name, "(file)", False, f"unknown mapping {name!r}")]
    results = []
    for i, case in enumerate(doc.get("cases") or []):
        title = str(case.get("name") or f"case {i + 1}")
        try:
            payload = case_input(file, case)
        except (OSError, ValueError) as exc:
            results.append(CaseResult(file, name, title, False, f"cannot read input: {exc}"))
            continue
        meta = case_meta(mapping, case)
        resolver = case_resolver(case)
        disagreement = paths_differ(mapping, payload, meta, resolver)
        if disagreement:
            detail = f"the engine's two paths disagree (a bug in the hub): {disagreement}"
            results.append(CaseResult(file, name, title, False, detail))
            continue
        try:
            output = mapping.apply(payload, meta, resolver)
            if output is not None and mapping.target_entity:
                validate(mapping.target_entity, output)
        except ProcessingError as exc:
            want = case.get("expect_error")
            if want is not None and str(want) in str(exc):
                results.append(CaseResult(file, name, title, True))
            else:
                results.append(CaseResult(file, name, title, False, f"failed: {exc}"))
            continue
        results.append(CaseResult(file, name, title, *_compare(case, output)))
    return results


def case_meta(mapping: CompiledMapping, case: dict[str, Any]) -> dict[str, Any]:
    """What the mapping sees as ``meta.*`` in a test case: ``connection`` ``test``, ``origin``
    the connection, ``system`` the mapping's source connector (else ``test``),
    ``destination_system`` the connection, ``event_type`` its source event, unless the case's
    ``meta:`` says otherwise."""
    meta = {"connection": "test", "event_type": mapping.source_event, **(case.get("meta") or {})}
    meta.setdefault("origin", meta["connection"])
    meta.setdefault("system", mapping.source_connector or "test")
    meta.setdefault("destination_system", meta["connection"])
    return meta


def case_resolver(case: dict[str, Any]) -> StubResolver:
    """The golden-id resolver of a test case, with its stubs."""
    return StubResolver(
        {str(k): str(v) for k, v in (case.get("golden_ids") or {}).items()},
        {str(k): str(v) for k, v in (case.get("external_ids") or {}).items()},
    )


def paths_differ(
    mapping: CompiledMapping, payload: Any, meta: Mapping[str, Any], resolver: Any
) -> str:
    """``""`` when the generated function and the closures agree on this input: the same
    output, exactly (types and key order too), or both fail and ``apply`` raises the closures'
    error. Otherwise, what differs."""
    try:
        precise = mapping.apply_precise(payload, meta, resolver)
    except MappingFailed as exc:
        try:
            fast = mapping.apply_fast(payload, meta, resolver)
        except Exception:  # any failure: apply() asks the closures for the error
            pass
        else:
            return f"the closures fail ({exc}), the generated function gives {fast!r}"
        try:
            mapping.apply(payload, meta, resolver)
        except MappingFailed as again:
            return "" if str(again) == str(exc) else f"apply() fails with {again}, not {exc}"
        return f"apply() does not fail, the closures do: {exc}"
    try:
        fast = mapping.apply_fast(payload, meta, resolver)
    except Exception as exc:
        return f"the generated function fails ({exc!r}), the closures give {precise!r}"
    if repr(fast) != repr(precise):
        return f"the generated function gives {fast!r}, the closures {precise!r}"
    return ""


def case_input(file: Path, case: dict[str, Any]) -> Any:
    """The input of a test case: inline, or read from its ``input_file``."""
    if "input_file" in case:
        text = (file.parent / str(case["input_file"])).read_text(encoding="utf-8")
        return exactjson.loads(text)
    return _decimals(case.get("input"))


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def _compare(case: dict[str, Any], output: Any) -> tuple[bool, str]:
    if case.get("expect_error") is not None:
        return False, f"expected an error containing {case['expect_error']!r}, got output"
    if case.get("expect_dropped"):
        return (output is None, "" if output is None else "expected the event to be dropped")
    if output is None:
        return False, "the mapping dropped the event"
    if "expect" in case:
        want = case["expect"]
    elif "expect_subset" in case:
        want = case["expect_subset"]
        output = _subset(output, want)
    else:
        return False, "a case needs expect, expect_subset, expect_error or expect_dropped"
    if output == want:
        return True, ""
    return False, diff(want, output)


def _subset(output: Any, want: Any) -> Any:
    if isinstance(want, dict) and isinstance(output, dict):
        return {k: _subset(output[k], v) for k, v in want.items() if k in output}
    if isinstance(want, list) and isinstance(output, list) and len(want) == len(output):
        return [_subset(o, w) for o, w in zip(output, want, strict=True)]
    return output


def diff(want: Any, got: Any) -> str:
    a = json.dumps(want, indent=2, sort_keys=True, default=str).splitlines()
    b = json.dumps(got, indent=2, sort_keys=True, default=str).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "expected", "actual", lineterm=""))


def run_tests(mappings_dir: Path, path: Path | None = None) -> list[CaseResult]:
    """Load the mappings of ``mappings_dir`` and run the test files at ``path``."""
    from .engine import load_mappings

    mappings = load_mappings(mappings_dir)
    target = path or (mappings_dir / "tests")
    results: list[CaseResult] = []
    for file in case_files(target):
        try:
            results.extend(run_file(mappings, file))
        except (yaml.YAMLError, ConfigError) as exc:
            results.append(CaseResult(file, "?", "(file)", False, str(exc)))
    return results
