"""The matcher: rules, thresholds (link / review / new), blocking bounds, explanations."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from hub.matching import Decision, Entry, FieldProblem, Matcher, MemoryIndex, load_match_config

CONFIG = """\
entities:
  customer:
    fields:
      email: email
      first: name
      last: name
      city: text
      phone: {normalise: phone, region: DE}
    rules:
      - {name: same-email, fields: [email]}
    compare:
      first:
        comparator: exact
        levels: [{at: 1.0, m: 0.8, u: 0.1}]
      last:
        comparator: exact
        levels: [{at: 1.0, m: 0.8, u: 0.1}]
    prior: 0.5
    thresholds: {upper: 0.95, lower: 0.5}
    blocking:
      max_block_size: 50
      max_candidates: 20
      keys: [[city]]
"""
# weights: agree log2(0.8/0.1) = 3, disagree log2(0.2/0.9) = -2.17; prior 0.5 weighs 0
# both agree 6 → p 0.985 (link); one agrees 0.83 → p 0.64 (review); none → p 0.01 (new)


def matcher(text: str = CONFIG, index: MemoryIndex | None = None) -> Matcher:
    config = load_match_config(Path("mdm.yaml"), text).entities["customer"]
    ids = (f"g{i}" for i in itertools.count(1))
    return Matcher(config, index, new_id=lambda: next(ids))


def test_thresholds_route_to_link_review_and_new() -> None:
    m = matcher()
    first = m.resolve("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert (first.decision, first.golden_id, first.candidates) == (Decision.NEW, "g1", ())

    same = m.resolve("crm:7", {"first": "ANN", "last": "Lée", "city": "bonn"})
    assert (same.decision, same.golden_id) == (Decision.LINK, "g1")
    assert same.probability == pytest.approx(64 / 65)
    assert same.rule is None

    maybe = m.resolve("erp:3", {"first": "Ann", "last": "Smith", "city": "Bonn"})
    assert maybe.decision is Decision.REVIEW
    assert maybe.golden_id == "g2"  # its own golden id until a steward decides
    assert maybe.review == ("g1",)
    assert 0.5 <= maybe.probability < 0.95  # type: ignore[operator]

    other = m.resolve("erp:4", {"first": "Bob", "last": "Jones", "city": "Bonn"})
    assert (other.decision, other.golden_id) == (Decision.NEW, "g3")
    assert other.best is not None and other.best.probability < 0.5
    assert m.index.clusters() == {"g1": ["shop:1", "crm:7"], "g2": ["erp:3"], "g3": ["erp:4"]}  # type: ignore[attr-defined]


def test_the_result_explains_itself_field_by_field() -> None:
    m = matcher()
    m.resolve("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    result = m.resolve("erp:3", {"first": "Ann", "last": "Smith", "city": "Bonn"})
    assert result.best is not None and result.best.record_id == "shop:1"
    assert [(f.field, f.left, f.right, f.level) for f in result.fields] == [
        ("first", "ann", "ann", ">=1"),
        ("last", "smith", "lee", "else"),
    ]
    assert result.prior_weight + sum(f.weight for f in result.fields) == pytest.approx(
        result.best.score
    )
    assert [c.golden_id for c in result.candidates] == ["g1"]


def test_a_rule_links_whatever_the_score() -> None:
    m = matcher()
    m.resolve("shop:1", {"email": "ann@example.com", "first": "Ann", "city": "Bonn"})
    result = m.resolve("crm:2", {"email": " ANN@example.com", "first": "Annie", "city": "Köln"})
    assert (result.decision, result.golden_id, result.rule) == (Decision.LINK, "g1", "same-email")
    assert result.fields[0].field == "first"  # still explained: the rule's record, compared


def test_a_known_record_keeps_its_golden_id() -> None:
    m = matcher()
    m.resolve("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    again = m.resolve("shop:1", {"first": "Bob", "city": "Köln"})
    assert (again.decision, again.golden_id) == (Decision.KNOWN, "g1")
    assert len(m.index) == 1  # type: ignore[arg-type]


def test_match_changes_nothing() -> None:
    m = matcher()
    m.match("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert len(m.index) == 0  # type: ignore[arg-type]


def test_a_field_that_fails_normalisation_is_reported_and_left_out() -> None:
    m = matcher()
    result = m.resolve("shop:1", {"first": "Ann", "phone": "call me", "email": "nope"})
    assert result.problems == (
        FieldProblem("email", "not an e-mail address (local@domain.tld)"),
        FieldProblem("phone", "not a phone number"),
    )
    assert result.values == {"first": "ann"}
    assert result.decision is Decision.NEW


class CountingIndex(MemoryIndex):
    def __init__(self) -> None:
        super().__init__()
        self.returned = 0

    def block(self, key: str, limit: int) -> Sequence[Entry]:
        out = super().block(key, limit)
        self.returned += len(out)
        return out


def fill(m: Matcher, n: int, cities: Iterable[str]) -> None:
    for i, city in zip(range(n), itertools.cycle(cities), strict=False):
        m.resolve(f"seed:{i}", {"first": f"f{i}", "last": f"l{i}", "city": city})


def test_an_over_large_block_is_skipped_and_said_so() -> None:
    m = matcher()
    fill(m, 60, ["Bonn"])
    result = m.match("new:1", {"first": "f1", "last": "l1", "city": "Bonn"})
    assert result.candidates == ()
    assert [(s.key, s.reason) for s in result.skipped] == [
        ("city:bonn", "larger than max_block_size (50)")
    ]
    assert result.decision is Decision.NEW


def test_candidates_are_capped_and_do_not_grow_with_the_golden_records() -> None:
    text = CONFIG.replace("keys: [[city]]", "keys: [[city], [prefix(first, 1)]]")
    compared = []
    for size in (200, 2000):
        index = CountingIndex()
        m = matcher(text, index)
        fill(m, size, [f"c{i}" for i in range(size // 40)])  # blocks of 40 by city
        index.returned = 0
        result = m.match("new:1", {"first": "f1", "last": "l1", "city": "c1"})
        assert result.truncated  # 40 by city + up to 50 by first letter > 20
        assert len(result.candidates) == result.compared == 20
        compared.append(index.returned)
    assert compared[0] == compared[1] <= 40 + 51


def test_several_golden_records_above_upper_link_to_the_best_and_list_all() -> None:
    m = matcher()
    m.index.add(
        Entry("a:1", "gA", {"first": "ann", "last": "lee", "city": "bonn"}), [], ["city:bonn"]
    )
    m.index.add(
        Entry("b:1", "gB", {"first": "ann", "last": "lee", "city": "bonn"}), [], ["city:bonn"]
    )
    result = m.match("c:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert result.decision is Decision.LINK
    assert result.golden_id == "gA"  # equal scores: the smaller id, so it is repeatable
    assert {c.golden_id for c in result.candidates} == {"gA", "gB"}


def test_memory_index_refuses_a_record_twice() -> None:
    index = MemoryIndex()
    index.add(Entry("a:1", "g", {}), [], [])
    with pytest.raises(ValueError, match="indexed already"):
        index.add(Entry("a:1", "g", {}), [], [])


def test_the_example_customer_configuration() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_match_config(root / "examples/mdm.yaml").entities["customer"]
    m = Matcher(config)
    shop = m.resolve(
        "shop:1",
        {"email": "Ann.Lee@Example.com", "first_name": "Ann", "last_name": "Lee",
         "phone": "030 1234567", "postcode": "10115", "country": "Germany", "city": "Berlin"},
    )  # fmt: skip
    by_email = m.resolve("crm:1", {"email": " ann.lee@example.COM", "last_name": "Li"})
    assert (by_email.decision, by_email.rule) == (Decision.LINK, "same-email")
    by_phone = m.resolve("erp:1", {"phone": "+49 30 1234567", "last_name": "LEE"})
    assert (by_phone.decision, by_phone.rule) == (Decision.LINK, "same-phone-and-last-name")
    fuzzy = m.resolve(
        "erp:2",
        {"first_name": "Anne", "last_name": "Lee", "postcode": "10115", "country": "DE",
         "city": "Berlin", "street": "Invalidenstr. 1"},
    )  # fmt: skip
    assert fuzzy.rule is None and fuzzy.best is not None
    assert fuzzy.best.golden_id == shop.golden_id
    assert fuzzy.decision in (Decision.LINK, Decision.REVIEW)
    stranger = m.resolve("erp:3", {"first_name": "Bob", "last_name": "Stone", "postcode": "10115"})
    assert stranger.decision is Decision.NEW


def test_when_capped_the_records_sharing_most_blocks_are_compared() -> None:
    text = CONFIG.replace("keys: [[city]]", "keys: [[city], [last]]").replace(
        "max_candidates: 20", "max_candidates: 2"
    )
    m = matcher(text)
    fill(m, 5, ["Bonn"])  # five strangers in Bonn, indexed first
    m.resolve("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    result = m.match("crm:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert result.truncated and result.compared == 2
    assert result.decision is Decision.LINK
    assert result.best is not None and result.best.record_id == "shop:1"


def test_the_prior_is_shared_among_the_golden_records_compared() -> None:
    m = matcher()
    m.resolve("shop:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    m.resolve("crm:1", {"first": "ANN", "last": "LEE", "city": "Bonn"})  # same golden record
    one = m.match("erp:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert one.prior_weight == m.config.prior_weight == 0.0  # prior 0.5: 0 bits
    for i in range(3):
        m.resolve(f"seed:{i}", {"first": f"f{i}", "last": f"l{i}", "city": "Bonn"})
    four = m.match("erp:1", {"first": "Ann", "last": "Lee", "city": "Bonn"})
    assert four.prior_weight == pytest.approx(-2.0)  # four golden records: log2(4) bits less
    assert four.best is not None and one.best is not None
    assert four.best.score == pytest.approx(one.best.score - 2.0)


def test_term_frequencies_weigh_a_common_name_less_than_a_rare_one() -> None:
    text = CONFIG.replace(
        "      last:\n        comparator: exact\n",
        "      last:\n        comparator: exact\n        term_frequency: true\n",
    )
    index = MemoryIndex()
    m = matcher(text, index)
    assert index.counted == {"last"}
    for i in range(3000):  # a town full of Müllers, one Zyskowski
        m.resolve(f"seed:{i}", {"first": f"P{i}", "last": "Müller", "city": f"t{i}"})
    m.resolve("seed:z", {"first": "Ola", "last": "Zyskowski", "city": "elsewhere"})
    assert index.frequency("last", "muller") == (3000, 3001)
    assert index.frequency("first", "ola") is None  # not counted: no term_frequency

    common = m.match("q:1", {"first": "Zed", "last": "Müller", "city": "t5"})
    rare = m.match("q:2", {"first": "Zed", "last": "Zyskowski", "city": "elsewhere"})
    last_common = next(f for f in common.fields if f.field == "last")
    last_rare = next(f for f in rare.fields if f.field == "last")
    assert last_common.level.endswith("(term frequency)")
    # the configured u is 0.1 (3 bits); u from the counts: (3000 + 100) / 4001 and
    # (1 + 100) / 4001
    assert last_common.weight == pytest.approx(math.log2(0.8 / (3100 / 4001)))
    assert last_rare.weight == pytest.approx(math.log2(0.8 / (101 / 4001)))
    assert last_rare.weight > 3 > last_common.weight
    assert rare.probability is not None and common.probability is not None
    assert rare.probability > common.probability


LIBRARY = """
import json, sys
from pathlib import Path
from hub.matching import Matcher, load_match_config

config = load_match_config(Path("examples/mdm.yaml")).entities["customer"]
matcher = Matcher(config)
given = {}
for record_id, record in [
    ("shop:1042", {"email": " Ann.Lee@Example.com", "first_name": "Ann", "last_name": "Lee"}),
    ("crm:77", {"email": "ann.lee@example.com", "last_name": "Li"}),
    ("shop:1043", {"email": "bob@example.org", "first_name": "Bob", "last_name": "Stone"}),
]:
    result = matcher.resolve(record_id, record)
    given[record_id] = [result.decision, result.golden_id, result.rule]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {
    "aiokafka", "confluent_kafka", "fastapi", "starlette", "uvicorn", "h11", "aiosqlite",
    "asyncpg", "sqlite3",
})
print(json.dumps({"given": given, "clusters": matcher.index.clusters(), "loaded": loaded}))
"""


def test_the_library_runs_in_process_without_a_broker_a_web_server_or_a_database() -> None:
    """docs/mdm.md, "Using the library": records fed one at a time, each one's golden id back,
    then the final clustering, in a plain process: nothing of the broker, the web server or a
    database driver is even imported."""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", LIBRARY],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    ann, crm, bob = (out["given"][r] for r in ("shop:1042", "crm:77", "shop:1043"))
    assert ann[0] == "new" and crm == ["link", ann[1], "same-email"] and bob[0] == "new"
    assert out["clusters"] == {ann[1]: ["shop:1042", "crm:77"], bob[1]: ["shop:1043"]}
    assert out["loaded"] == []
