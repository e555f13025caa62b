"""hub.exactjson reads what json.loads(parse_float=Decimal) reads, value for value and type for
type, and refuses what it refuses."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import exactjson

ORDER = "tests/fixtures/shopify/orders_create.json"


def reference(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal)


def typed(value: Any) -> Any:
    """``value`` with every scalar's type beside it: 1 == 1.0 == Decimal(1) must not pass."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, Decimal):
        return ("Decimal", str(value))  # 1.10 stays 1.10, -0.0 stays -0.0
    return (type(value).__name__, value)


numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0.0", "1E400", "1e-400", "0.10", "2.50", "1E+2", "-0"]),
)
scalars = st.one_of(
    st.none().map(lambda _: "null"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text().map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.text().map(json.dumps),  # \\u escapes, lone surrogates included
    numbers,
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.text().map(json.dumps), inner), max_size=5).map(
            lambda kvs: "{" + ",".join(f"{k}: {v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(documents)
def test_reads_every_json_document_as_json_does(text: str) -> None:
    expected = typed(reference(text))
    assert typed(exactjson.loads(text)) == expected
    assert typed(exactjson.loads(text.encode("utf-8", "surrogatepass"))) == expected


@pytest.mark.parametrize(
    "data",
    [
        b'{"x": NaN, "y": -Infinity}',  # json reads them, msgspec does not
        b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
        '{"a": "\\ud800"}',  # an escaped lone surrogate
        b'{"a": 1, "a": 2.5}',  # a repeated key: the last wins
        b'{"n": ' + b"9" * 30 + b"}",  # beyond 64 bits
    ],
)
def test_what_msgspec_refuses_json_decides(data: bytes | str) -> None:
    assert repr(typed(exactjson.loads(data))) == repr(typed(reference(data)))


@pytest.mark.parametrize(
    "data",
    [b'{"a": 1} x', b'{"a": ', b"", b"\xff", b'{"n": ' + b"9" * 5000 + b"}"],
)
def test_refuses_what_json_refuses_with_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        reference(data)
    with pytest.raises(ValueError):
        exactjson.loads(data)


def test_a_shopify_order_reads_the_same() -> None:
    with open(ORDER, "rb") as f:
        body = f.read()
    assert typed(exactjson.loads(body)) == typed(reference(body))


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("kind", [("[", "]"), ('{"a":', "}")])
def test_json_nested_beyond_the_recursion_limit_is_a_value_error(
    kind: tuple[str, str], depth: int
) -> None:
    """json and msgspec raise RecursionError there, which callers' ValueError handling missed
    (hub.canonical.decode falls back to json beyond orjson's 1,024 levels)."""
    from hub.canonical import decode

    data = (kind[0] * depth + "1" + kind[1] * depth).encode()
    with pytest.raises(exactjson.NestedTooDeeply):
        exactjson.loads(data)
    if depth > 1_024:
        with pytest.raises(exactjson.NestedTooDeeply):
            decode(data)
