"""The match configuration: examples/mdm.yaml loads; mistakes are refused with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.matching import load_match_config
from hub.matching.normalise import NORMALISERS

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
entities:
  customer:
    fields:
      email: email
      last_name: name
      country: country
      phone: {normalise: phone, region: DE, country_field: country}
    rules:
      - {name: same-email, fields: [email]}
    compare:
      last_name:
        comparator: jaro_winkler
        levels: [{at: 1.0, m: 0.9, u: 0.01}]
    thresholds: {upper: 0.9, lower: 0.5}
    blocking:
      keys: [[soundex(last_name)]]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_match_config(Path("mdm.yaml"), text)
    return [str(p) for p in info.value.problems]


def test_examples_load() -> None:
    for path in (ROOT / "examples/mdm.yaml", ROOT / "bench/mdm-febrl.yaml"):
        config = load_match_config(path)
        assert config.entities
    customer = load_match_config(ROOT / "examples/mdm.yaml").entities["customer"]
    # a comma inside a [flow list] splits an item in YAML: the loader puts it back together
    assert "domain(email)+prefix(last_name, 3)" in [k.name for k in customer.keys]


def test_good_config_compiles_with_else_level_getting_the_rest() -> None:
    entity = load_match_config(Path("mdm.yaml"), GOOD).entities["customer"]
    assert [f.field for f in entity.fields] == ["email", "last_name", "country", "phone"]
    assert entity.fields[3].normaliser is NORMALISERS["phone"]
    assert entity.fields[3].options.region == "DE"
    (compare,) = entity.comparisons
    assert [(lv.label, lv.m, lv.u) for lv in compare.levels] == [
        (">=1", 0.9, 0.01),
        ("else", pytest.approx(0.1), pytest.approx(0.99)),
    ]
    assert (entity.upper, entity.lower) == (0.9, 0.5)
    assert entity.survivorship.default.rule == "most_recent"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("      email: email\n", "      email: emial\n",
         "mdm.yaml:4 at entities.customer.fields.email.normalise: Input should be"),
        ("    rules:\n", "    rulez: []\n    rules:\n",
         "mdm.yaml:8 at entities.customer.rulez: unknown key"),
        ("fields: [email]}", "fields: [e_mail]}",
         "mdm.yaml:9 at entities.customer.rules[0].fields[0]: unknown field 'e_mail'"),
        ("comparator: jaro_winkler", "comparator: jaro",
         "mdm.yaml:12 at entities.customer.compare.last_name.comparator: Input should be"),
        ("{at: 1.0, m: 0.9, u: 0.01}]", "{at: 0.5, m: 0.5, u: 0.01}, {at: 0.9, m: 0.1, u: 0.1}]",
         "mdm.yaml:13 at entities.customer.compare.last_name.levels: levels must go from"),
        ("{at: 1.0, m: 0.9, u: 0.01}]", "{at: 1.0, m: 0.9, u: 0.01}, {at: 0.5, m: 0.2, u: 0.1}]",
         "mdm.yaml:13 at entities.customer.compare.last_name.levels: the levels' m (and u)"),
        ("{at: 1.0, m: 0.9, u: 0.01}]", "{at: 1.0, m: 1.5, u: 0.01}]",
         "mdm.yaml:13 at entities.customer.compare.last_name.levels[0].m: Input should be less"),
        ("lower: 0.5", "lower: 0.95",
         "mdm.yaml:14 at entities.customer.thresholds.lower: lower must not be above upper"),
        ("[[soundex(last_name)]]", "[[soundx(last_name)]]",
         "mdm.yaml:16 at entities.customer.blocking.keys[0][0]: unknown key function 'soundx'"),
        ("[[soundex(last_name)]]", "[[soundex(surname)]]",
         "mdm.yaml:16 at entities.customer.blocking.keys[0][0]: unknown field 'surname'"),
        ("country_field: country}", "country_field: email}",
         "mdm.yaml:7 at entities.customer.fields.phone.country_field: 'email' is not normalised"),
        ("region: DE,", "region: Germany,",
         "mdm.yaml:7 at entities.customer.fields.phone.region: String should match"),
        ("      last_name: name\n", "      last_name: {normalise: name, region: DE}\n",
         "mdm.yaml:5 at entities.customer.fields.last_name.region: only phone uses a region"),
        ("comparator: jaro_winkler", "comparator: date",
         "mdm.yaml:12 at entities.customer.compare.last_name.comparator: 'last_name' is not"),
        ("{name: same-email,", "{name: 'same:email',",
         "mdm.yaml:9 at entities.customer.rules[0].name: String should match"),
    ],
)  # fmt: skip
def test_mistakes_are_reported_at_their_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    found = problems(GOOD.replace(old, new))
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("fields: [email]}", "fields: [nope]}").replace("lower: 0.5", "lower: 0.99")
    assert len(problems(text)) == 2


def test_survivorship_needs_sources_for_source_priority() -> None:
    text = GOOD + "    survivorship:\n      fields:\n        email: source_priority\n"
    assert problems(text) == [
        "mdm.yaml:19 at entities.customer.survivorship.fields.email: "
        "source_priority needs `sources`"
    ]


def test_not_a_mapping_and_bad_yaml() -> None:
    assert problems("- a\n") == ["mdm.yaml:1: must be a mapping with `entities:`"]
    assert problems("entities: {a: [}\n")[0].startswith("mdm.yaml:1: invalid YAML")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_match_config(Path("/nonexistent/mdm.yaml"))
