"""Survivorship: per-field rules choose the golden values; each keeps its provenance."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hub.matching import FieldRule, SourceRecord, Survivor, SurvivorshipRules, choose, survive


def at(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


SHOP = SourceRecord(
    "shop", "s-1", at(3), {"email": "ann@new.example", "street": "Main St 1", "phone": ""}
)
CRM = SourceRecord(
    "crm", "c-9", at(2), {"email": "ann@old.example", "street": "Main Street 1, Flat 2"}
)
ERP = SourceRecord(
    "erp", "e-4", at(1), {"email": None, "street": "Main St 1", "phone": "+4930123", "tax_id": "X1"}
)
RECORDS = [SHOP, CRM, ERP]


def test_most_recent_skips_empty_values() -> None:
    rule = FieldRule("most_recent")
    assert choose("email", rule, RECORDS) == Survivor(
        "ann@new.example", "shop", "s-1", at(3), "most_recent"
    )
    # the shop's phone is empty: the ERP's survives although older
    assert choose("phone", rule, RECORDS) == Survivor(
        "+4930123", "erp", "e-4", at(1), "most_recent"
    )
    assert choose("fax", rule, RECORDS) is None


def test_source_priority() -> None:
    rule = FieldRule("source_priority", ("erp", "crm"))
    assert choose("street", rule, RECORDS).system == "erp"  # type: ignore[union-attr]
    # the ERP has no e-mail: the next system in the list; unlisted systems come last
    assert choose("email", rule, RECORDS).system == "crm"  # type: ignore[union-attr]
    assert choose("email", FieldRule("source_priority", ("erp",)), RECORDS).system == "shop"  # type: ignore[union-attr]


def test_most_complete_is_the_longest_most_recent_on_a_tie() -> None:
    survivor = choose("street", FieldRule("most_complete"), RECORDS)
    assert survivor is not None and survivor.value == "Main Street 1, Flat 2"
    tie = [SourceRecord("a", "1", at(1), {"n": "abc"}), SourceRecord("b", "2", at(5), {"n": "xyz"})]
    assert choose("n", FieldRule("most_complete"), tie).source_id == "2"  # type: ignore[union-attr]


def test_most_frequent() -> None:
    records = [
        SourceRecord("a", "1", at(1), {"city": "Bonn"}),
        SourceRecord("b", "2", at(2), {"city": " bonn"}),
        SourceRecord("c", "3", at(3), {"city": "Köln"}),
    ]
    survivor = choose("city", FieldRule("most_frequent"), records)
    assert survivor is not None and (survivor.value, survivor.source_id) == (" bonn", "2")


def test_golden_record_with_provenance_whatever_the_input_order() -> None:
    rules = SurvivorshipRules(
        default=FieldRule("most_recent"),
        fields={
            "street": FieldRule("most_complete"),
            "tax_id": FieldRule("source_priority", ("erp",)),
        },
    )
    results = [survive("cus_1", order, rules) for order in itertools.permutations(RECORDS)]
    golden = results[0]
    assert all(r == golden for r in results)
    assert golden.values() == {
        "email": "ann@new.example",
        "phone": "+4930123",
        "street": "Main Street 1, Flat 2",
        "tax_id": "X1",
    }
    assert {name: (s.system, s.source_id, s.rule) for name, s in golden.fields.items()} == {
        "email": ("shop", "s-1", "most_recent"),
        "phone": ("erp", "e-4", "most_recent"),
        "street": ("crm", "c-9", "most_complete"),
        "tax_id": ("erp", "e-4", "source_priority"),
    }
    assert golden.fields["street"].updated_at == at(2)
    assert golden.sources == (("crm", "c-9"), ("erp", "e-4"), ("shop", "s-1"))


def test_ties_in_time_are_broken_by_system_and_id_not_input_order() -> None:
    same_time = [
        SourceRecord("b", "1", at(1), {"x": "from b"}),
        SourceRecord("a", "1", at(1), {"x": "from a"}),
    ]
    for order in (same_time, same_time[::-1]):
        assert choose("x", FieldRule("most_recent"), order).value == "from a"  # type: ignore[union-attr]
