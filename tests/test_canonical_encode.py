"""hub.canonical.encode: orjson, with the bytes json.dumps(compact, ensure_ascii=False) gives;
hub.canonical.decode reads them back as json.loads does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.canonical import decode, encode

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | _TEXT
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_encode_gives_the_bytes_json_gives(data: dict[str, Any]) -> None:
    assert encode(data) == _json(data)
    assert decode(encode(data)) == data == json.loads(encode(data))


def test_integers_beyond_64_bits_fall_back_to_json() -> None:
    data = {"n": 2**70, "m": -(2**65)}
    assert encode(data) == _json(data)
    assert json.loads(encode(data)) == data
    assert decode(encode(data)) == data


def test_decode_reads_what_json_reads_and_refuses_what_it_refuses() -> None:
    assert decode(b'{"x": NaN}')["x"] != 0  # from a foreign producer: json reads it
    assert decode(b'{"a": 1.5, "b": [true, null]}') == {"a": 1.5, "b": [True, None]}
    for bad in (b'{"a": ', b"\xff", b""):
        with pytest.raises(ValueError):
            decode(bad)
