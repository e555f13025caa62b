"""Blocking keys: which golden records a new record is compared with at all.

A key is a list of parts, each a field or a function of one: ``postcode``,
``metaphone(last_name)``, ``prefix(first_name, 2)``, ``year(date_of_birth)``,
``domain(email)``. A record has the key when every part has a value; records with an equal key
share a block. The candidates of a new record are the members of its blocks, so its cost
depends on the size of its blocks, not on the number of golden records; the matcher caps both
(``max_block_size``, ``max_candidates``). Phonetic codes come from ``jellyfish``.

- ``F``              the normalised value
- ``soundex(F)``     Soundex of the first word (R163 for robert, rupert)
- ``metaphone(F)``   Metaphone of the whole value (phonetic, English-biased)
- ``nysiis(F)``      NYSIIS of the first word
- ``prefix(F, n)``   the first n characters
- ``suffix(F, n)``   the last n characters
- ``year(F)``        the first four characters of an ISO date
- ``domain(F)``      what follows the @ of an e-mail address
- ``first_word(F)``  the first word
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jellyfish

Transform = Callable[[str, int], str]


def _first(value: str) -> str:
    return value.split(" ", 1)[0]


TRANSFORMS: dict[str, tuple[Transform, bool]] = {  # name -> (function, takes a number)
    "soundex": (lambda v, n: jellyfish.soundex(_first(v)), False),
    "metaphone": (lambda v, n: jellyfish.metaphone(v).replace(" ", ""), False),
    "nysiis": (lambda v, n: jellyfish.nysiis(_first(v)), False),
    "prefix": (lambda v, n: v[:n], True),
    "suffix": (lambda v, n: v[-n:], True),
    "year": (lambda v, n: v[:4] if len(v) >= 4 else "", False),
    "domain": (lambda v, n: v.rsplit("@", 1)[1] if "@" in v else "", False),
    "first_word": (lambda v, n: _first(v), False),
}
_PART = re.compile(r"^\s*(?:(\w+)\s*\(\s*(\w+)\s*(?:,\s*(\d+)\s*)?\)|(\w+))\s*$")


class BadKey(ValueError):
    pass


@dataclass(frozen=True)
class KeyPart:
    field: str
    transform: str | None = None
    n: int = 0

    @classmethod
    def parse(cls, text: str) -> KeyPart:
        m = _PART.match(text)
        if not m:
            hint = ""
            if text.count("(") != text.count(")"):
                hint = " (unbalanced parentheses)"
            raise BadKey(f"{text!r} is not a field or function(field[, n]){hint}")
        func, field, n, bare = m.groups()
        if bare:
            return cls(bare)
        if func not in TRANSFORMS:
            raise BadKey(f"unknown key function {func!r} (known: {', '.join(TRANSFORMS)})")
        takes_n = TRANSFORMS[func][1]
        if takes_n and not n:
            raise BadKey(f"{func}(field, n) needs a length n")
        if not takes_n and n:
            raise BadKey(f"{func}(field) takes no length")
        size = int(n) if n else 0
        if takes_n and size < 1:
            raise BadKey(f"{func}: n must be at least 1")
        return cls(field, func, size)

    def apply(self, values: Mapping[str, str]) -> str:
        value = values.get(self.field)
        if not value:
            return ""
        if self.transform is None:
            return value
        return TRANSFORMS[self.transform][0](value, self.n)

    def __str__(self) -> str:
        if self.transform is None:
            return self.field
        return f"{self.transform}({self.field}{', ' + str(self.n) if self.n else ''})"


@dataclass(frozen=True)
class BlockingKey:
    name: str
    parts: tuple[KeyPart, ...]

    def of(self, values: Mapping[str, str]) -> str | None:
        """This key of a record (prefixed with the key's name), or None if a part is empty."""
        out = []
        for part in self.parts:
            value = part.apply(values)
            if not value:
                return None
            out.append(value)
        return f"{self.name}:" + "\x1f".join(out)


def keys_of(keys: list[BlockingKey], values: Mapping[str, str]) -> list[str]:
    return [k for k in (key.of(values) for key in keys) if k is not None]
