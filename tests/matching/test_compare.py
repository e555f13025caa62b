"""Comparators, Fellegi-Sunter levels and weights, blocking keys."""

from __future__ import annotations

import math

import pytest

from hub.matching.blocking import BadKey, BlockingKey, KeyPart, keys_of
from hub.matching.compare import COMPARATORS
from hub.matching.scoring import Comparison, Level, probability, score_pair


def test_exact() -> None:
    assert COMPARATORS["exact"]("a", "a") == 1.0
    assert COMPARATORS["exact"]("a", "b") == 0.0


def test_string_similarities_order_typos_below_equal_above_unrelated() -> None:
    for name in ("jaro_winkler", "levenshtein", "name"):
        compare = COMPARATORS[name]
        assert compare("christine", "christine") == 1.0
        typo = compare("christine", "christnie")
        assert 0.7 < typo < 1.0, name
        assert compare("christine", "bob") < 0.6, name


def test_token_set_forgives_word_order_and_extra_words() -> None:
    assert COMPARATORS["token_set"]("tullaroop street", "street tullaroop") == 1.0
    assert COMPARATORS["token_set"]("flat 2 tullaroop street", "tullaroop street") == 1.0
    assert COMPARATORS["token_set"]("tullaroop street", "giblin place") < 0.5


def test_name_is_the_best_of_jaro_winkler_and_token_set() -> None:
    assert COMPARATORS["name"]("anna maria", "maria anna") == 1.0
    assert COMPARATORS["jaro_winkler"]("anna maria", "maria anna") < 1.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1980-03-04", "1980-03-04", 1.0),
        ("1980-03-04", "1980-04-03", 0.9),  # day and month swapped
        ("1980-03-04", "1980-03-05", 0.8),  # one digit
        ("1980-03-04", "1981-03-05", 0.0),  # only the month agrees
        ("1980-03-04", "1980-11-24", 0.0),
    ],
)
def test_date(a: str, b: str, expected: float) -> None:
    assert COMPARATORS["date"](a, b) == expected


def test_date_two_of_three_components() -> None:
    assert COMPARATORS["date"]("1980-03-04", "1985-03-04") == 0.8  # one digit of the year
    assert COMPARATORS["date"]("1980-03-04", "1975-03-04") == 0.6  # year differs, rest equal


def test_postcode() -> None:
    compare = COMPARATORS["postcode"]
    assert compare("SW1A1AA", "SW1A1AA") == 1.0
    assert compare("4011", "4012") == 0.8
    assert compare("SW1A1AA", "SW1A9ZZ") == 0.5  # same district
    assert compare("4011", "7300") == 0.0


NAME = Comparison(
    "name",
    "jaro_winkler",
    COMPARATORS["jaro_winkler"],
    (Level(">=1", 1.0, 0.8, 0.01), Level(">=0.9", 0.9, 0.15, 0.04), Level("else", 0, 0.05, 0.95)),
)
CITY = Comparison(
    "city", "exact", COMPARATORS["exact"], (Level(">=1", 1.0, 0.9, 0.1), Level("else", 0, 0.1, 0.9))
)


def test_level_weights_are_log2_m_over_u() -> None:
    assert NAME.levels[0].weight == pytest.approx(math.log2(80))
    assert NAME.level_of(0.95).label == ">=0.9"
    assert NAME.level_of(0.2).label == "else"
    assert NAME.levels[-1].weight < 0


def test_score_adds_weights_and_missing_fields_add_nothing() -> None:
    score, parts = score_pair((NAME, CITY), 0.0, {"name": "ann", "city": "x"},
                              {"name": "ann"}, explain=True)  # fmt: skip
    assert score == pytest.approx(math.log2(80))
    assert [(p.field, p.level, p.weight) for p in parts] == [
        ("name", ">=1", pytest.approx(math.log2(80))),
        ("city", "missing", 0.0),
    ]
    disagree, _ = score_pair((NAME, CITY), 0.0, {"name": "ann", "city": "x"},
                             {"name": "ann", "city": "y"})  # fmt: skip
    assert disagree == pytest.approx(math.log2(80) + math.log2(0.1 / 0.9))


def test_swap_with_compares_against_the_other_field() -> None:
    first = Comparison("first", "exact", COMPARATORS["exact"],
                       (Level(">=1", 1.0, 0.9, 0.01),), swap_with="last")  # fmt: skip
    score, _ = score_pair((first,), 0.0, {"first": "lee"}, {"first": "ann", "last": "lee"})
    assert score == pytest.approx(math.log2(90))


def test_probability() -> None:
    assert probability(0.0) == 0.5
    assert probability(10) == pytest.approx(1024 / 1025)
    assert probability(-1000) == 0.0 and probability(1000) == 1.0


def test_blocking_key_parts() -> None:
    values = {"last_name": "robert smith", "email": "ann@example.com", "dob": "1980-03-04"}
    cases = {
        "last_name": "robert smith",
        "soundex(last_name)": "R163",
        "nysiis(last_name)": "RABAD",
        "metaphone(last_name)": "RBRTSM0",
        "prefix(last_name, 3)": "rob",
        "suffix(last_name, 2)": "th",
        "first_word(last_name)": "robert",
        "domain(email)": "example.com",
        "year(dob)": "1980",
    }
    for text, expected in cases.items():
        part = KeyPart.parse(text)
        assert part.apply(values) == expected, text
        assert str(part) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shout(name)", "unknown key function 'shout'"),
        ("prefix(name)", "needs a length"),
        ("soundex(name, 2)", "takes no length"),
        ("prefix(name, 0)", "at least 1"),
        ("prefix(name", "unbalanced parentheses"),
        ("two words", "is not a field"),
    ],
)
def test_bad_key_parts(text: str, message: str) -> None:
    with pytest.raises(BadKey, match=message):
        KeyPart.parse(text)


def test_a_record_has_a_key_only_when_every_part_has_a_value() -> None:
    key = BlockingKey("pc+sx", (KeyPart("postcode"), KeyPart("last", "soundex")))
    assert key.of({"postcode": "4011", "last": "waller"}) == "pc+sx:4011\x1fW460"
    assert key.of({"postcode": "4011"}) is None
    assert keys_of([key], {"last": "waller"}) == []
