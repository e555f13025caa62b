"""JSON with exact decimals: how the hub reads source payloads (amounts are money).

``loads`` gives what ``json.loads(data, parse_float=Decimal)`` gives, about 3x faster: msgspec
decodes, and hands each float literal's text to ``Decimal``. What msgspec refuses and json
accepts (NaN and Infinity, a byte order mark, lone surrogates, integers beyond 64 bits) is
decided by json, so nothing that was readable before is refused now
(tests/test_exactjson.py checks the two agree). A Shopify order of 10 KB: 70 -> 25 us here;
the parse was 15% of the mapper's CPU (bench/README.md).

Both recurse: JSON nested about 1,000 levels deep exhausts Python's recursion limit, and that
is a ``ValueError`` here too, never a ``RecursionError`` that the callers' handling of bad
input would miss.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

_decoder = msgspec.json.Decoder(float_hook=Decimal)


def loads(data: bytes | str) -> Any:
    """``data`` as JSON, every non-integer number a ``Decimal``.

    Raises ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``, the integer
    digit limit, or :class:`NestedTooDeeply`) for what is not JSON or cannot be read."""
    try:
        try:
            return _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return json.loads(data, parse_float=Decimal)
    except RecursionError:
        raise NestedTooDeeply() from None


class NestedTooDeeply(ValueError):
    """JSON nested deeper than the parser can follow (Python's recursion limit)."""

    def __init__(self) -> None:
        super().__init__("JSON nested too deeply to be read")


__all__ = ["NestedTooDeeply", "loads"]
