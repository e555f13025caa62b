"""Type errors that can be seen before any event runs are refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.mapping.engine import compile_mapping

HEAD = """target: {entity: order}
lookups:
  status:
    values: {paid: paid, open: pending}
fields:
  id: "'ord_1'"
  external_refs: [{system: "'shop'", id: "'1'"}]
  number: name
  currency: "'EUR'"
  created_at: "'2026-11-22T10:00:00Z'"
  lines:
    each: items
    fields: {line_id: "'1'", name: "'x'", quantity: "'1'", unit_price: "'1'", total: "'1'"}
  subtotal: "'1'"
  total: "'1'"
"""


def check(fields: str) -> str:
    with pytest.raises(ConfigError) as info:
        compile_mapping("m", Path("m.yaml"), HEAD + fields)
    return str(info.value)


def test_a_well_typed_mapping_loads() -> None:
    text = HEAD + "  status: \"'cancelled' if cancelled else lookup('status', state)\"\n"
    assert compile_mapping("m", Path("m.yaml"), text).target_entity == "order"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("  status: \"'shipped'\"\n", "'shipped' is not allowed here"),
        ("  status: \"'paid' if x else 'sent'\"\n", "'sent' is not allowed here"),
        ("  status: {const: sent}\n", "'sent' is not allowed here"),
        ('  status: pending\n  tags: "name > 1"\n', "gives a boolean, but the field takes a list"),
        (
            "  status: pending\n  note: \"split(name, ',')\"\n",
            "gives a list, but the field takes text",
        ),
        ('  status: pending\n  tags: "upper(name)"\n', "gives text, but the field takes a list"),
    ],
)
def test_type_errors_name_the_field_and_the_line(field: str, message: str) -> None:
    error = check(field)
    assert message in error
    offending = len((HEAD + field).splitlines())  # the last line added holds the bad field
    assert f"m.yaml:{offending} at fields." in error


def test_a_lookup_whose_values_are_not_allowed_is_refused() -> None:
    text = HEAD.replace("open: pending", "open: on_hold") + "  status: \"lookup('status', s)\"\n"
    with pytest.raises(ConfigError, match="'on_hold' is not allowed here"):
        compile_mapping("m", Path("m.yaml"), text)


def test_text_literal_in_arithmetic_is_refused_at_load_time() -> None:
    text = HEAD + "  status: pending\n  note: \"name + ' ' + name\"\n"
    with pytest.raises(ConfigError, match="' ' is text, not a number"):
        compile_mapping("m", Path("m.yaml"), text)


def test_text_compared_with_a_number_is_refused_at_load_time() -> None:
    text = HEAD + "  status: \"'paid' if str(total) == 0 else 'pending'\"\n"
    with pytest.raises(ConfigError) as info:
        compile_mapping("m", Path("m.yaml"), text)
    line = len(text.splitlines())
    assert str(info.value) == (
        f"m.yaml:{line} at fields.status: cannot compare text with a number (str(total) == 0); "
        "convert one side first, e.g. decimal(x) or str(x)"
    )


def test_lookup_values_give_the_type_of_a_comparison() -> None:
    # every value of the table is text, so comparing its result with a number is refused
    text = HEAD + "  status: pending\nwhen: \"lookup('status', s) == 1\"\n"
    with pytest.raises(ConfigError, match=r"at when: cannot compare text with a number"):
        compile_mapping("m", Path("m.yaml"), text)
