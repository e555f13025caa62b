"""The mapping engine: compile-time checks with file:line, and what a mapping produces."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.errors import ConfigError, MappingFailed
from hub.mapping import compile_mapping, load_mappings, mapping_files
from hub.mapping.engine import CompiledMapping
from hub.mdm import DeterministicResolver

META = {"connection": "shop", "event_type": "orders/create", "event_id": "e1", "subject": "1"}

ORDER_OK = """\
description: test order
source: {connector: shopify, event: orders/create}
target: {entity: order}
fields:
  id: golden_id('order', meta.connection, id)
  external_refs:
    - {system: meta.connection, id: str(id)}
  number: name
  status: {const: paid}
  currency: upper(currency)
  created_at: datetime_utc(created_at)
  lines:
    each: line_items
    fields:
      line_id: str(id)
      name: title
      quantity: str(quantity)
      unit_price: money(price)
      total: money(decimal(price) * quantity)
  subtotal: money(subtotal)
  total: money(total)
"""


def compile_text(text: str, tmp_path: Path, name: str = "test/m") -> CompiledMapping:
    return compile_mapping(name, tmp_path / f"{name}.yaml", text=text)


def refused(text: str, tmp_path: Path) -> tuple[Path, ConfigError]:
    path = tmp_path / "test" / "m.yaml"
    with pytest.raises(ConfigError) as info:
        compile_mapping("test/m", path, text=text)
    return path, info.value


def apply(m: CompiledMapping, payload: Any, **meta: Any) -> Any:
    return m.apply(payload, {**META, **meta}, DeterministicResolver())


# -- compile-time errors, each with file, line and path -----------------------------------------


def test_a_valid_mapping_compiles(tmp_path: Path) -> None:
    m = compile_text(ORDER_OK, tmp_path)
    assert m.name == "test/m"
    assert m.target_entity == "order"
    assert m.source_connector == "shopify"
    assert m.source_event == "orders/create"
    assert m.description == "test order"
    assert len(m.version) == 12
    assert compile_text(ORDER_OK, tmp_path).version == m.version
    assert compile_text(ORDER_OK + "\n# changed\n", tmp_path).version != m.version


def test_unknown_function(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("upper(currency)", "uppercase(currency)"), tmp_path)
    assert str(err) == f"{path}:10 at fields.currency: unknown function uppercase()"


def test_bad_expression_syntax(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("number: name", "number: name +"), tmp_path)
    assert str(err).startswith(f"{path}:8 at fields.number: syntax error in 'name +'")


def test_wrong_arity(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("money(total)", "money(total, 2, 3)"), tmp_path)
    assert str(err) == f"{path}:21 at fields.total: money() takes 1 to 2 arguments, got 3"


def test_unknown_lookup_table(tmp_path: Path) -> None:
    text = ORDER_OK.replace("status: {const: paid}", "status: lookup('state', financial_status)")
    text = text.replace(
        "fields:\n  id:", "lookups:\n  status:\n    values: {paid: paid}\nfields:\n  id:", 1
    )
    path, err = refused(text, tmp_path)
    assert str(err) == (
        f"{path}:12 at fields.status: unknown lookup table 'state' (declared: status)"
    )


def test_golden_id_of_an_unknown_entity(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("golden_id('order'", "golden_id('orders'"), tmp_path)
    assert str(err) == (
        f"{path}:5 at fields.id: golden_id(): unknown entity 'orders' "
        "(entities: customer, product, order, inventory)"
    )
    # an entity that is not a literal is the resolver's business at run time
    compile_text(ORDER_OK.replace("golden_id('order'", "golden_id(kind"), tmp_path)


def test_bad_lookup_declaration(tmp_path: Path) -> None:
    text = ORDER_OK.replace(
        "fields:\n  id:",
        "lookups:\n  a: {paid: paid}\n  b:\n    values: {x: y}\n    fallback: z\nfields:\n  id:",
        1,
    )
    path, err = refused(text, tmp_path)
    assert [str(p) for p in err.problems] == [
        f"{path}:5 at lookups.a: a lookup table needs 'values: {{key: value, ...}}'",
        f"{path}:6 at lookups.b: unknown key(s) fallback",
    ]


def test_field_not_in_target_model(tmp_path: Path) -> None:
    text = ORDER_OK.replace("  number: name\n", "  number: name\n  colour: {const: red}\n")
    path, err = refused(text, tmp_path)
    assert str(err).startswith(f"{path}:9 at fields.colour: Order has no field 'colour' (fields: ")


def test_field_not_in_nested_model(tmp_path: Path) -> None:
    text = ORDER_OK.replace("      name: title\n", "      name: title\n      colour: red\n")
    path, err = refused(text, tmp_path)
    assert str(err).startswith(
        f"{path}:17 at fields.lines.fields.colour: OrderLine has no field 'colour'"
    )


def test_required_field_never_set(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("  subtotal: money(subtotal)\n", ""), tmp_path)
    assert str(err) == f"{path}:4 at fields: required field 'subtotal' of Order is never set"


def test_required_field_of_list_items(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("      name: title\n", ""), tmp_path)
    assert str(err) == (
        f"{path}:14 at fields.lines.fields: required field 'name' of OrderLine is never set"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{entity: orders}", "at target.entity: unknown entity 'orders' (known: "),
        ("{model: Adress}", "at target.model: unknown canonical model 'Adress'"),
        ("{entity: order, model: Address}", "at target: target must be one of"),
        ("order", "at target: target must be one of"),
    ],
)
def test_bad_target(tmp_path: Path, target: str, message: str) -> None:
    path, err = refused(ORDER_OK.replace("{entity: order}", target), tmp_path)
    assert str(err).startswith(f"{path}:3 {message}")


def test_missing_target(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("target: {entity: order}\n", ""), tmp_path)
    assert str(err).startswith(f"{path}:1 at target: target must be one of")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path, err = refused(ORDER_OK.replace("description:", "descripton:"), tmp_path)
    assert str(err) == (
        f"{path}:1 at descripton: unknown key "
        "(expected one of: description, fields, lookups, source, target, when)"
    )


def test_conflicting_keys_in_a_field(tmp_path: Path) -> None:
    text = ORDER_OK.replace("status: {const: paid}", "status: {const: paid, expr: status}")
    path, err = refused(text, tmp_path)
    assert str(err) == f"{path}:9 at fields.status: expr cannot be combined with const"


def test_each_without_a_body(tmp_path: Path) -> None:
    text = "target: {format: erp}\nfields:\n  lines:\n    each: items\n    where: q > 0\n"
    path, err = refused(text, tmp_path)
    assert str(err) == (
        f"{path}:3 at fields.lines: "
        "'each' needs 'fields', 'value' or 'use' to say what each element becomes"
    )


def test_no_fields(tmp_path: Path) -> None:
    path, err = refused("target: {format: erp}\nfields: {}\n", tmp_path)
    assert str(err) == f"{path}:2 at fields: a mapping needs 'fields'"


def test_not_a_mapping_file(tmp_path: Path) -> None:
    path, err = refused("- a\n- b\n", tmp_path)
    assert str(err) == f"{path}:1: a mapping file must be a YAML mapping"


def test_all_problems_at_once(tmp_path: Path) -> None:
    text = (
        ORDER_OK.replace("upper(currency)", "nope(currency)")
        .replace("  subtotal: money(subtotal)\n", "")
        .replace("description:", "desc:")
    )
    _path, err = refused(text, tmp_path)
    assert [(p.line, p.path) for p in err.problems] == [
        (1, "desc"),
        (4, "fields"),
        (10, "fields.currency"),
    ]


# -- runtime ------------------------------------------------------------------------------------


def order_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": 1001,
        "name": "#1001",
        "currency": "eur",
        "created_at": "2026-11-22T11:15:00+01:00",
        "line_items": [
            {"id": 1, "title": "Mug", "quantity": 2, "price": "4.50"},
            {"id": 2, "title": "Tea", "quantity": 1, "price": "0.10"},
        ],
        "subtotal": "9.10",
        "total": "9.10",
    }
    payload.update(changes)
    return payload


def test_apply_produces_the_canonical_order(tmp_path: Path) -> None:
    out = apply(compile_text(ORDER_OK, tmp_path), order_payload())
    assert out == {
        "id": DeterministicResolver().golden_id("order", "shop", "1001"),
        "external_refs": [{"system": "shop", "id": "1001"}],
        "number": "#1001",
        "status": "paid",
        "currency": "EUR",
        "created_at": "2026-11-22T10:15:00Z",
        "lines": [
            {"line_id": "1", "name": "Mug", "quantity": "2", "unit_price": "4.50", "total": "9.00"},
            {"line_id": "2", "name": "Tea", "quantity": "1", "unit_price": "0.10", "total": "0.10"},
        ],
        "subtotal": "9.10",
        "total": "9.10",
    }


def test_failure_names_mapping_field_with_list_index_and_expression(tmp_path: Path) -> None:
    text = ORDER_OK.replace("quantity: str(quantity)", "quantity: str(int(quantity))")
    m = compile_text(text, tmp_path, "shop/orders")
    items = order_payload()["line_items"]
    items[1]["quantity"] = "1.5"
    with pytest.raises(MappingFailed) as info:
        apply(m, order_payload(line_items=items))
    err = info.value
    assert err.mapping == "shop/orders"
    assert err.field == "lines[1].quantity"
    assert err.input_path == "str(int(quantity))"
    assert err.reason == "'1.5' is not a whole number"
    assert str(err) == (
        "mapping shop/orders: field lines[1].quantity (input str(int(quantity))): "
        "'1.5' is not a whole number"
    )
    assert err.retriable is False


def test_failure_at_top_level_field(tmp_path: Path) -> None:
    m = compile_text(ORDER_OK, tmp_path)
    with pytest.raises(MappingFailed) as info:
        apply(m, order_payload(created_at="2026-11-22 11:15"))
    assert info.value.field == "created_at"
    assert info.value.input_path == "datetime_utc(created_at)"
    assert "has no time zone offset" in info.value.reason


def test_each_over_something_not_a_list(tmp_path: Path) -> None:
    m = compile_text(ORDER_OK, tmp_path)
    with pytest.raises(MappingFailed) as info:
        apply(m, order_payload(line_items={"id": 1}))
    assert info.value.field == "lines"
    assert info.value.reason == "expected a list, got dict"


def test_division_by_zero_is_a_mapping_failure(tmp_path: Path) -> None:
    m = compile_text("target: {format: x}\nfields:\n  ratio: a / b\n", tmp_path)
    assert apply(m, {"a": 1, "b": 4}) == {"ratio": "0.25"}
    with pytest.raises(MappingFailed) as info:
        apply(m, {"a": 1, "b": 0})
    assert info.value.field == "ratio"


def test_when_drops_events(tmp_path: Path) -> None:
    m = compile_text(
        "when: \"status != 'voided' and total > 0\"\n"
        "target: {format: x}\nfields:\n  status: status\n",
        tmp_path,
    )
    assert apply(m, {"status": "paid", "total": 1}) == {"status": "paid"}
    assert apply(m, {"status": "voided", "total": 1}) is None
    assert apply(m, {"status": "paid", "total": 0}) is None
    assert apply(m, {"status": "paid"}) is None  # null > 0 is false


def test_each_where_filters_and_value(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "fields:\n"
        "  skus:\n"
        "    each: items\n"
        "    where: qty > 0 and sku\n"
        "    value: upper(sku)\n"
        "  lines:\n"
        "    each: items\n"
        "    where: qty > 0\n"
        "    fields:\n"
        "      sku: sku\n"
        "      n: qty\n"
        "      order: root.number\n"
        "  none:\n"
        "    each: missing\n"
        "    value: x\n",
        tmp_path,
    )
    out = apply(
        m,
        {
            "number": "#1",
            "items": [
                {"sku": "a", "qty": 1},
                {"sku": "b", "qty": 0},
                {"sku": None, "qty": 2},
                {"sku": "d", "qty": Decimal("3")},
            ],
        },
    )
    assert out == {
        "skus": ["A", "D"],
        "lines": [
            {"sku": "a", "n": 1, "order": "#1"},
            {"n": 2, "order": "#1"},
            {"sku": "d", "n": "3", "order": "#1"},
        ],
    }


def test_nested_each_reports_both_indexes(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "fields:\n"
        "  boxes:\n"
        "    each: boxes\n"
        "    fields:\n"
        "      items:\n"
        "        each: items\n"
        "        fields: {n: int(n)}\n",
        tmp_path,
        "nest",
    )
    payload = {"boxes": [{"items": [{"n": 1}]}, {"items": [{"n": 1}, {"n": "x"}]}]}
    with pytest.raises(MappingFailed) as info:
        apply(m, payload)
    assert info.value.field == "boxes[1].items[1].n"


def test_const_if_default_forms(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "fields:\n"
        "  channel: {const: web}\n"
        "  literal_number: 5\n"
        "  literal_decimal: 2.50\n"
        "  flag: true\n"
        "  tier:\n"
        "    if: decimal(total) > 1000\n"
        "    then: {const: gold}\n"
        "    else: {const: standard}\n"
        "  greeting:\n"
        "    if: name\n"
        "    then: \"f'Hello {name}'\"\n"
        "  note: {expr: note, default: '-'}\n"
        "  kind: {expr: kind, default: retail}\n"
        "  nested: {fields: {a: {const: 1}}}\n"
        "  plain_object: {b: name}\n"
        "  pair: [name, \"'x'\"]\n",
        tmp_path,
    )
    assert apply(m, {"total": "1500", "name": "Ann", "note": "", "kind": "b2b"}) == {
        "channel": "web",
        "literal_number": 5,
        "literal_decimal": "2.50",  # exact as written in YAML
        "flag": True,
        "tier": "gold",
        "greeting": "Hello Ann",
        "note": "-",
        "kind": "b2b",
        "nested": {"a": 1},
        "plain_object": {"b": "Ann"},
        "pair": ["Ann", "x"],
    }
    out = apply(m, {"total": "10"})
    assert out["tier"] == "standard"
    assert "greeting" not in out  # an if without else gives null, so the field is left out
    assert out["note"] == "-"
    assert out["kind"] == "retail"
    assert out["plain_object"] == {}
    assert out["pair"] == [None, "x"]


def test_null_outputs_are_omitted(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "fields:\n"
        "  a: a\n"
        "  b: b\n"
        "  c: {const: null}\n"
        "  d: phone or null\n"
        "  e: note\n",
        tmp_path,
    )
    assert apply(m, {"a": 1, "b": None, "phone": "", "note": ""}) == {"a": 1, "e": ""}


def test_decimals_are_rendered_as_plain_strings(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "fields:\n"
        "  big: decimal(big)\n"
        "  small: decimal(small)\n"
        "  product: a * b\n"
        "  sum: sum(values)\n"
        "  in_list: [decimal(big)]\n"
        "  each:\n"
        "    each: values\n"
        "    value: decimal(item) * 1\n",
        tmp_path,
    )
    out = apply(
        m,
        {"big": "1E+3", "small": "1E-7", "a": "0.1", "b": "3", "values": ["1.5", "2.50"]},
    )
    assert out == {
        "big": "1000",
        "small": "0.0000001",
        "product": "0.3",
        "sum": "4.00",
        "in_list": ["1000"],
        "each": ["1.5", "2.50"],
    }
    # and floats parsed as Decimal stay exact
    assert apply(m, {"a": Decimal("0.1"), "b": Decimal("0.2")})["product"] == "0.02"


def test_lookups_with_and_without_default(tmp_path: Path) -> None:
    m = compile_text(
        "target: {format: x}\n"
        "lookups:\n"
        "  strict: {values: {a: A, 1: one}}\n"
        "  soft: {values: {a: A}, default: other}\n"
        "fields:\n"
        "  strict: lookup('strict', v)\n"
        "  soft: lookup('soft', v)\n",
        tmp_path,
    )
    assert apply(m, {"v": "a"}) == {"strict": "A", "soft": "A"}
    assert apply(m, {"v": 1}) == {"strict": "one", "soft": "other"}
    with pytest.raises(MappingFailed) as info:
        apply(m, {"v": "b"})
    assert info.value.field == "strict"
    assert "'b' is not in lookup table 'strict'" in info.value.reason


# -- use: fragments across files ----------------------------------------------------------------


FRAGMENT = """\
description: an address fragment
target: {model: Address}
fields:
  line1: street
  country: upper(country)
  postal_code: str(int(zip))
"""

USER = """\
target: {format: erp}
fields:
  billing: {use: common/address, from: billing}
  shipping: {use: common/address, from: shipping}
  addresses:
    each: addresses
    use: common/address
"""


def write_mappings(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mappings"
    for name, text in files.items():
        path = root / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_use_a_fragment_from_another_file(tmp_path: Path) -> None:
    root = write_mappings(
        tmp_path,
        {
            "common/address": FRAGMENT,
            "erp/order": USER,
            "tests/erp_order": "mapping: erp/order\ncases: []\n",  # tests/ is not a mapping
        },
    )
    assert set(mapping_files(root)) == {"common/address", "erp/order"}
    mset = load_mappings(root)
    assert set(mset.mappings) == {"common/address", "erp/order"}
    assert "erp/order" in mset
    m = mset.get("erp/order")
    assert m is not None
    out = apply(
        m,
        {
            "billing": {"street": "Main St 1", "country": "de", "zip": "01234"},
            "shipping": None,
            "addresses": [{"street": "A"}, {"country": "fr"}],
        },
    )
    assert out == {
        "billing": {"line1": "Main St 1", "country": "DE", "postal_code": "1234"},
        "addresses": [{"line1": "A"}, {"country": "FR"}],
    }

    with pytest.raises(MappingFailed) as info:
        apply(m, {"billing": {"zip": "12a"}})
    err = info.value
    assert err.mapping == "erp/order"
    assert err.field == "billing.postal_code"
    assert err.reason.startswith("(in common/address) ")
    assert err.input_path == "str(int(zip))"

    with pytest.raises(MappingFailed) as info:
        apply(m, {"addresses": [{}, {"zip": "x"}]})
    assert info.value.field == "addresses[1].postal_code"


def test_use_of_an_unknown_mapping_is_refused(tmp_path: Path) -> None:
    root = write_mappings(tmp_path, {"erp/order": USER})
    with pytest.raises(ConfigError) as info:
        load_mappings(root)
    file = root / "erp" / "order.yaml"
    assert str(info.value).splitlines()[0] == (
        f"{file}:3 at fields.billing.use: unknown mapping 'common/address' in 'use'"
    )


def test_use_of_an_entity_mapping_is_refused(tmp_path: Path) -> None:
    root = write_mappings(
        tmp_path,
        {"common/address": ORDER_OK, "erp/order": USER.replace("shipping", "ship")},
    )
    with pytest.raises(ConfigError) as info:
        load_mappings(root)
    assert "mapping 'common/address' is an entity mapping, not a fragment" in str(info.value)


def test_load_mappings_reports_problems_of_every_file(tmp_path: Path) -> None:
    root = write_mappings(
        tmp_path,
        {
            "a": "target: {format: x}\nfields: {x: nope(1)}\n",
            "b": "target: {format: x}\nfields: {y: lambda: 1}\n",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_mappings(root)
    assert [(Path(p.file).name, p.line) for p in info.value.problems] == [
        ("a.yaml", 2),
        ("b.yaml", 2),
    ]


def test_use_problems_are_reported_with_the_other_problems_of_the_file(tmp_path: Path) -> None:
    """A misspelt use: is not hidden behind another mistake in the same file, and a used
    fragment with mistakes of its own is reported once (not also as an unknown mapping)."""
    root = write_mappings(
        tmp_path,
        {
            "common/address": FRAGMENT.replace("upper(country)", "upcase(country)"),
            "erp/customer": ORDER_OK,
            "erp/order": (
                "target: {format: x}\n"
                "fields:\n"
                "  a: nope(1)\n"
                "  billing: {use: common/address, from: billing}\n"
                "  shipping: {use: common/adress, from: shipping}\n"
                "  customer: {use: erp/customer}\n"
            ),
        },
    )
    with pytest.raises(ConfigError) as info:
        load_mappings(root)
    assert [(Path(p.file).name, p.line, p.message) for p in info.value.problems] == [
        ("address.yaml", 5, "unknown function upcase()"),
        ("order.yaml", 3, "unknown function nope()"),
        ("order.yaml", 5, "unknown mapping 'common/adress' in 'use'"),
        ("order.yaml", 6, "mapping 'erp/customer' is an entity mapping, not a fragment"),
    ]


def test_missing_mappings_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mappings folder does not exist"):
        load_mappings(tmp_path / "absent")


def test_the_shipped_mappings_load() -> None:
    mset = load_mappings(Path(__file__).resolve().parents[2] / "mappings")
    order = mset.get("shopify/orders_create")
    assert order is not None and order.target_entity == "order"
    address = mset.get("shopify/address")
    assert address is not None and address.target_entity is None


def test_a_mapping_sees_where_the_event_came_from(tmp_path: Path) -> None:
    """meta.origin (the connection of the raw event) and meta.system (its system), as the mapper
    and the delivery worker give them; a mapping can act on them (here: drop what came from the
    ERP it writes to)."""
    m = compile_text(
        """\
target: {format: erp-order}
when: meta.system != 'tryton'
fields:
  came_from: meta.origin
  system: meta.system
  number: name
""",
        tmp_path,
    )
    assert apply(m, {"name": "#1"}, origin="shop", system="shopify") == {
        "came_from": "shop",
        "system": "shopify",
        "number": "#1",
    }
    assert apply(m, {"name": "#2"}, origin="erp", system="tryton") is None
    assert apply(m, {"name": "#3"}) == {"number": "#3"}  # unknown origin: null, left out


def test_test_cases_see_an_origin_by_default(tmp_path: Path) -> None:
    from hub.mapping.testing import case_meta

    m = compile_text(ORDER_OK, tmp_path)
    assert case_meta(m, {}) == {
        "connection": "test",
        "origin": "test",
        "system": "shopify",  # the mapping's source connector
        "destination_system": "test",
        "event_type": "orders/create",
    }
    assert case_meta(m, {"meta": {"connection": "shop", "system": "shop-eu"}}) == {
        "connection": "shop",
        "origin": "shop",
        "system": "shop-eu",
        "destination_system": "shop",
        "event_type": "orders/create",
    }


def test_external_id_asks_the_resolver_for_the_systems_id(tmp_path: Path) -> None:
    from hub.mapping.testing import StubResolver

    text = """\
description: canonical order -> the ERP
source: {entity: order}
target: {format: erp-order}
fields:
  erp_id: external_id('order', 'erp', id)
  number: number
"""
    mapping = compile_text(text, tmp_path)
    resolver = StubResolver({}, {"order/erp/ord_1": "SO-7"})
    meta = {"connection": "erp"}
    assert mapping.apply({"id": "ord_1", "number": "#1"}, meta, resolver) == {
        "erp_id": "SO-7",
        "number": "#1",
    }
    # none linked (or no golden id): the field is left out
    assert mapping.apply({"id": "ord_2", "number": "#2"}, meta, resolver) == {"number": "#2"}
    assert mapping.apply({"number": "#3"}, meta, resolver) == {"number": "#3"}
    _path, err = refused(text.replace("external_id('order'", "external_id('orders'"), tmp_path)
    assert "external_id(): unknown entity 'orders'" in str(err)


def test_a_source_may_name_several_event_types(tmp_path: Path) -> None:
    text = ORDER_OK.replace(
        "event: orders/create}", "event: [orders/create, orders/updated, orders/create]}"
    )
    mapping = compile_text(text, tmp_path)
    assert mapping.source_events == ("orders/create", "orders/updated")
    assert mapping.source_event == "orders/create"
    _path, err = refused(ORDER_OK.replace("event: orders/create}", "event: [1, '']}"), tmp_path)
    assert "event must be an event type, or a list of them" in str(err)
