"""The generated function of a mapping (the fast path) against its closures (the precise path).

Every event goes through the generated function; the closures run only when it fails, to name
the field, list index and expression. So the two must agree on every input: the same output,
exactly, or both fail, with the closures' error reported. The docs examples are checked the same
way in test_docs_examples.py.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.errors import MappingFailed
from hub.mapping import MappingSet, compile_mapping, load_mappings
from hub.mapping.codegen import generated_source
from hub.mapping.engine import CompiledMapping
from hub.mapping.testing import case_files, case_input, case_meta, case_resolver, paths_differ
from hub.mdm import DeterministicResolver

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
META = {"connection": "shop"}


@cache
def shipped() -> MappingSet:
    return load_mappings(MAPPINGS)


def _cases() -> list[Any]:
    params = []
    for file in case_files(MAPPINGS / "tests"):
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        for i, case in enumerate(doc["cases"]):
            params.append(
                pytest.param(file, doc["mapping"], i, id=f"{doc['mapping']}:{case['name']}")
            )
    return params


CASES = _cases()


def test_there_are_cases_with_outputs_and_with_errors() -> None:
    kinds = set()
    for file, _mapping, i in (p.values for p in CASES):
        case = yaml.safe_load(file.read_text(encoding="utf-8"))["cases"][i]
        kinds.add("error" if "expect_error" in case else "output")
    assert kinds == {"error", "output"}


@pytest.mark.parametrize(("file", "name", "index"), CASES)
def test_both_paths_agree_on_every_test_case(file: Path, name: str, index: int) -> None:
    mapping = shipped().get(name)
    assert mapping is not None
    case = yaml.safe_load(file.read_text(encoding="utf-8"))["cases"][index]
    payload = case_input(file, case)
    assert paths_differ(mapping, payload, case_meta(mapping, case), case_resolver(case)) == ""


class CountingResolver(DeterministicResolver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        self.calls.append((entity, system, external_id))
        return super().golden_id(entity, system, external_id)


def test_a_valid_event_is_mapped_once_by_the_generated_function() -> None:
    """No silent fallback: the closures would ask the resolver for every id a second time."""
    mapping = shipped().get("shopify/orders_create")
    assert mapping is not None
    payload = case_input(
        MAPPINGS / "tests" / "x.yaml",
        {"input_file": "../../tests/fixtures/shopify/orders_create.json"},
    )
    resolver = CountingResolver()
    output = mapping.apply(payload, META, resolver)
    assert output is not None
    assert len(resolver.calls) == len(set(resolver.calls)) + 1  # one product appears twice
    assert [c[0] for c in resolver.calls].count("order") == 1


def compile_set(tmp_path: Path, files: dict[str, str]) -> MappingSet:
    for name, text in files.items():
        path = tmp_path / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_mappings(tmp_path)


LINE = """\
target: {model: OrderLine}
lookups:
  unit: {values: {pc: piece}}
fields:
  line_id: str(id)
  name: title
  quantity: str(quantity)
  unit_price: money(price)
  total: money(decimal(price) * quantity)
  sku: "lookup('unit', unit)"
"""

ORDERS = """\
target: {format: example}
when: not test
lookups:
  unit: {values: {pc: other table}}
fields:
  shipments:
    each: fulfillments
    where: status != 'cancelled'
    fields:
      lines: {each: line_items, use: shop/line}
      first: {use: shop/line, from: "line_items[0]"}
      labels:
        - f"{id}"
        - {const: x}
        - {if: gift, then: {const: gift}}
      note: {expr: note, default: '(none)'}
"""


def test_errors_are_the_closures_errors_with_indexes_and_fragment(tmp_path: Path) -> None:
    mset = compile_set(tmp_path, {"shop/line": LINE, "shop/orders": ORDERS})
    m = mset.get("shop/orders")
    assert m is not None
    good_line = {"id": 1, "title": "Mug", "quantity": 2, "price": "4.50", "unit": "pc"}
    bad_line = {**good_line, "price": "four"}
    payload = {
        "fulfillments": [
            {"id": 1, "status": "cancelled", "line_items": [bad_line]},  # filtered out
            {"id": 2, "status": "open", "line_items": [good_line, good_line, bad_line]},
        ]
    }
    resolver = DeterministicResolver()
    with pytest.raises(Exception) as fast:
        m.apply_fast(payload, META, resolver)
    assert not isinstance(fast.value, MappingFailed)  # the fast path does not know where
    with pytest.raises(MappingFailed) as precise:
        m.apply_precise(payload, META, resolver)
    with pytest.raises(MappingFailed) as applied:
        m.apply(payload, META, resolver)
    assert (
        str(applied.value)
        == str(precise.value)
        == (
            "mapping shop/orders: field shipments[1].lines[2].unit_price (input money(price)): "
            "(in shop/line) 'four' is not a number"
        )
    )

    payload["fulfillments"][1]["line_items"][2] = good_line
    assert paths_differ(m, payload, META, resolver) == ""
    out = m.apply(payload, META, resolver)
    assert out is not None
    line = {
        "line_id": "1",
        "name": "Mug",
        "quantity": "2",
        "unit_price": "4.50",
        "total": "9.00",
        "sku": "piece",  # the fragment's own lookup table, not the caller's
    }
    assert out == {
        "shipments": [
            {
                "lines": [line, line, line],
                "first": line,
                "labels": ["2", "x", None],
                "note": "(none)",
            }
        ]
    }
    assert m.apply({**payload, "test": True}, META, resolver) is None
    assert m.apply_fast({**payload, "test": True}, META, resolver) is None


def test_a_failing_when_is_reported_as_the_field_when(tmp_path: Path) -> None:
    m = compile_mapping(
        "m", tmp_path / "m.yaml", "target: {format: x}\nwhen: total > 1\nfields: {a: a}\n"
    )
    payload = {"total": "2.00"}
    assert paths_differ(m, payload, META, None) == ""
    with pytest.raises(MappingFailed, match=r"field when \(input total > 1\)"):
        m.apply(payload, META, None)


def test_a_fragment_that_is_not_loaded_fails_alike(tmp_path: Path) -> None:
    m = compile_mapping(
        "m", tmp_path / "m.yaml", "target: {format: x}\nfields: {a: {use: shop/line}}\n"
    )
    assert paths_differ(m, {}, META, None) == ""
    with pytest.raises(MappingFailed, match="mapping 'shop/line' is not loaded"):
        m.apply({}, META, None)


def test_a_recursive_fragment_is_left_to_the_closures(tmp_path: Path) -> None:
    tree = "target: {format: node}\nfields: {name: name, children: {each: children, use: tree}}\n"
    mset = compile_set(tmp_path, {"tree": tree})
    m = mset.get("tree")
    assert m is not None
    payload = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    want = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert m.apply(payload, META, None) == want
    assert m.apply_precise(payload, META, None) == want


def test_values_from_the_file_never_become_source(tmp_path: Path) -> None:
    """Keys, field names, literals and lookup values are bound as constants of the generated
    function's namespace: the source holds only identifiers the generator made up."""
    evil = "__import__ os.system x"
    text = f"""\
target: {{format: x}}
lookups:
  t: {{values: {{"{evil}": "{evil}"}}, default: "{evil}"}}
fields:
  "{evil}": "item['{evil}']"
  b: "'{evil}'"
  c: {{const: "{evil}"}}
  d: {{expr: missing, default: "{evil}"}}
  e: "lookup('t', '{evil}')"
"""
    m = compile_mapping("m", tmp_path / "m.yaml", text)
    source = generated_source(m)
    assert "import" not in source and "system" not in source
    out = m.apply({evil: 1}, META, None)
    assert out == {evil: 1, "b": evil, "c": evil, "d": evil, "e": evil}


def test_load_mappings_generates_every_function_up_front(tmp_path: Path) -> None:
    mset = compile_set(tmp_path, {"shop/line": LINE, "shop/orders": ORDERS})
    generated: list[CompiledMapping] = [m for m in mset.mappings.values() if m._fast is not None]
    assert len(generated) == 2


def test_a_mapping_too_deep_for_python_runs_through_the_closures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """25 nested each: more nested loops than Python compiles (20). It still loads and maps."""
    spec, payload, want = "v", {"v": 1}, 1
    for _ in range(25):
        spec = "{each: x, value: " + spec + "}"
        payload, want = {"x": [payload]}, [want]
    mset = compile_set(tmp_path, {"deep": f"target: {{format: x}}\nfields:\n  a: {spec}\n"})
    m = mset.get("deep")
    assert m is not None
    assert "nested too deeply for one generated function" in caplog.text
    assert m.apply(payload, META, None) == {"a": want}
