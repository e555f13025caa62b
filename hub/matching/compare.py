"""Comparators: two normalised values in, a similarity between 0 (nothing alike) and 1 (equal).

A comparison in the configuration turns the similarity into a level (the first whose ``at`` it
reaches) and the level into a weight; see :mod:`hub.matching.scoring`. String similarities come
from ``rapidfuzz`` (C++, ~1 µs a pair, the same algorithms as Splink's and dedupe's).

- ``exact``          1 if equal, else 0.
- ``jaro_winkler``   Jaro-Winkler: typos, with a bonus for an equal start (names).
- ``levenshtein``    1 - edits / length of the longer (ids, numbers, house numbers).
- ``token_set``      rapidfuzz's token-set ratio: words in any order, extra words forgiven
                     (street lines, company names).
- ``date``           1 equal; 0.9 day and month swapped; 0.8 one digit typed wrong;
                     0.6 two of year, month, day equal; else 0.
- ``postcode``       1 equal; 0.8 one edit apart; 0.5 same first half (district); else 0.
- ``name``           the best of Jaro-Winkler and token-set, so a double first name, a swapped
                     ``"anna maria"`` / ``"maria anna"`` or a dropped middle name still scores high.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.fuzz import token_set_ratio

Comparator = Callable[[str, str], float]
ComparatorName = Literal[
    "exact", "jaro_winkler", "levenshtein", "token_set", "date", "postcode", "name"
]


def exact(a: str, b: str) -> float:
    return 1.0 if a == b else 0.0


def jaro_winkler(a: str, b: str) -> float:
    return 1.0 if a == b else float(JaroWinkler.normalized_similarity(a, b))


def levenshtein(a: str, b: str) -> float:
    return 1.0 if a == b else float(Levenshtein.normalized_similarity(a, b))


def token_set(a: str, b: str) -> float:
    return 1.0 if a == b else float(token_set_ratio(a, b)) / 100.0


def name(a: str, b: str) -> float:
    if a == b:
        return 1.0
    return max(float(JaroWinkler.normalized_similarity(a, b)), float(token_set_ratio(a, b)) / 100)


def date(a: str, b: str) -> float:
    """On ISO dates (``YYYY-MM-DD``, the ``date`` normaliser's output)."""
    if a == b:
        return 1.0
    ya, ma, da = a[:4], a[5:7], a[8:10]
    yb, mb, db = b[:4], b[5:7], b[8:10]
    if ya == yb and ma == db and da == mb:
        return 0.9
    if Levenshtein.distance(a, b) <= 1:
        return 0.8
    if (ya == yb) + (ma == mb) + (da == db) >= 2:
        return 0.6
    return 0.0


def postcode(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if Levenshtein.distance(a, b) <= 1:
        return 0.8
    half = max(1, (max(len(a), len(b)) + 1) // 2)
    if a[:half] == b[:half]:
        return 0.5
    return 0.0


COMPARATORS: dict[str, Comparator] = {
    "exact": exact,
    "jaro_winkler": jaro_winkler,
    "levenshtein": levenshtein,
    "token_set": token_set,
    "date": date,
    "postcode": postcode,
    "name": name,
}
