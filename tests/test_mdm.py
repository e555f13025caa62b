"""Golden ids through the crosswalk (hub/mdm.py CrosswalkResolver) on a real database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.crosswalk import Crosswalk
from hub.db import Database
from hub.errors import MasterDataUnavailable
from hub.mdm import CrosswalkResolver, DeterministicResolver, Miss, resolve_ahead

DETERMINISTIC = DeterministicResolver()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await database.start()
    try:
        yield database
    finally:
        await database.close()


def resolver(db: Database, **options: float) -> CrosswalkResolver:
    return CrosswalkResolver(Crosswalk(db), **options)  # type: ignore[arg-type]


async def test_an_answer_not_loaded_is_never_guessed_outside_collecting(db: Database) -> None:
    ids = resolver(db)
    with pytest.raises(MasterDataUnavailable, match="customer 'c-1' in crm is not loaded"):
        ids.golden_id("customer", "crm", "c-1")
    with pytest.raises(MasterDataUnavailable):
        ids.external_id("customer", "crm", "cus_1")


async def test_collect_then_load_answers_from_the_crosswalk_else_the_deterministic_id(
    db: Database,
) -> None:
    await Crosswalk(db).link("customer", "crm", "c-1", "cus_linked", linked_by="sink:crm")
    ids = resolver(db)
    misses: set[Miss] = set()
    placeholder = ids.collect(lambda: ids.golden_id("customer", "crm", "c-1"), misses)
    other = ids.collect(lambda: ids.golden_id("customer", "crm", "c-2"), misses)
    reverse = ids.collect(lambda: ids.external_id("customer", "crm", "cus_linked"), misses)
    assert placeholder == DETERMINISTIC.golden_id("customer", "crm", "c-1")
    assert reverse is None
    assert misses == {
        (False, "customer", "crm", "c-1"),
        (False, "customer", "crm", "c-2"),
        (True, "customer", "crm", "cus_linked"),
    }
    # what the crosswalk answered differently from what stood in: c-1's link, the reverse
    assert await ids.load(misses) == {
        (False, "customer", "crm", "c-1"),
        (True, "customer", "crm", "cus_linked"),
    }
    assert ids.golden_id("customer", "crm", "c-1") == "cus_linked"
    assert ids.external_id("customer", "crm", "cus_linked") == "c-1"
    # not linked: the deterministic id, as before the crosswalk existed (negative cache)
    assert ids.golden_id("customer", "crm", "c-2") == other
    again: set[Miss] = set()
    assert ids.collect(lambda: ids.golden_id("customer", "crm", "c-2"), again) == other
    assert again == set()


async def test_not_linked_is_believed_for_the_negative_ttl_only(db: Database) -> None:
    ids = resolver(db, negative_ttl_s=0)
    await ids.load({(False, "customer", "crm", "c-9")})
    with pytest.raises(MasterDataUnavailable):  # expired at once: asked again
        ids.golden_id("customer", "crm", "c-9")


async def test_the_cache_keeps_the_most_recently_used(db: Database) -> None:
    cw = Crosswalk(db)
    for i in range(3):
        await cw.link("product", "erp", f"p-{i}", f"prd_{i}", linked_by="test")
    ids = resolver(db, cache_size=2)
    await ids.load({(False, "product", "erp", "p-0"), (False, "product", "erp", "p-1")})
    assert ids.golden_id("product", "erp", "p-0") == "prd_0"  # p-0 used last: p-1 goes first
    await ids.load({(False, "product", "erp", "p-2")})
    assert ids.golden_id("product", "erp", "p-0") == "prd_0"
    assert ids.golden_id("product", "erp", "p-2") == "prd_2"
    with pytest.raises(MasterDataUnavailable):
        ids.golden_id("product", "erp", "p-1")


async def test_a_link_made_in_this_process_is_known_at_once(db: Database) -> None:
    ids = resolver(db)
    await ids.load({(True, "customer", "crm", "cus_1")})  # no id in the CRM yet
    assert ids.external_id("customer", "crm", "cus_1") is None
    link = await Crosswalk(db).link("customer", "crm", "c-5", "cus_1", linked_by="sink:crm")
    ids.learn(link)
    assert ids.external_id("customer", "crm", "cus_1") == "c-5"
    assert ids.golden_id("customer", "crm", "c-5") == "cus_1"
    ids.forget()
    with pytest.raises(MasterDataUnavailable):
        ids.golden_id("customer", "crm", "c-5")


async def test_a_crosswalk_that_cannot_be_read_is_unavailable_master_data(
    db: Database, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        conn.execute("DROP TABLE crosswalk")
    ids = resolver(db)
    with pytest.raises(MasterDataUnavailable, match="the crosswalk cannot be read now"):
        await ids.load({(False, "customer", "crm", "c-1")})
    # resolve_ahead lets the mapping ask, and the answer it cannot have is unavailable
    with pytest.raises(MasterDataUnavailable, match="not loaded"):
        await resolve_ahead(ids, lambda: ids.golden_id("customer", "crm", "c-1"))


async def test_resolve_ahead_maps_again_only_when_the_crosswalk_answered_otherwise(
    db: Database,
) -> None:
    await Crosswalk(db).link("customer", "crm", "c-1", "cus_linked", linked_by="sink:crm")
    ids = resolver(db)
    calls: list[str] = []

    def mapping(external: str) -> str:
        calls.append(external)
        return ids.golden_id("customer", "crm", external)

    assert await resolve_ahead(ids, lambda: mapping("c-1")) == "cus_linked"
    assert calls == ["c-1", "c-1"]  # collected, loaded, mapped again
    calls.clear()
    unlinked = await resolve_ahead(ids, lambda: mapping("c-2"))
    assert unlinked == DETERMINISTIC.golden_id("customer", "crm", "c-2")
    assert calls == ["c-2"]  # loaded, nothing linked: the first mapping stands
    calls.clear()
    assert await resolve_ahead(ids, lambda: mapping("c-1")) == "cus_linked"
    assert calls == ["c-1"]  # cached
    # a resolver that needs no loading is just called
    assert await resolve_ahead(DETERMINISTIC, lambda: "x") == "x"
