"""The MDM service (hub/mdm_service.py) on SQLite and PostgreSQL: resolve, concurrency,
survivorship with provenance, merge and unmerge."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.config import load_config
from hub.db import Database, crosswalk, mdm_golden, mdm_history, mdm_keys, mdm_reviews
from hub.errors import ConfigError, MdmRefused
from hub.matching import Decision, load_match_config
from hub.matching.scoring import tf_weight
from hub.mdm import DeterministicResolver
from hub.mdm_service import ChangeWatcher, MdmService

from .support.databases import database_url
from .support.harness import until

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_match_config(ROOT / "examples" / "mdm.yaml")

ANNA = {
    "first_name": "Anna",
    "last_name": "Müller",
    "email": "anna.mueller@example.com",
    "phone": "0151 23456789",
    "street": "Hauptstraße 5",
    "postcode": "10115",
    "city": "Berlin",
    "country": "DE",
    "date_of_birth": "1980-04-02",
}
# the same person in the CRM: another e-mail, no phone, a typo: matched on the score
ANNA_CRM = {
    "first_name": "Ana",
    "last_name": "Mueller",
    "email": "a.mueller@example.org",
    "street": "Hauptstr. 5",
    "postcode": "10115",
    "city": "Berlin",
    "country": "DE",
    "date_of_birth": "1980-04-02",
}
# like Anna, but born a year later with another e-mail: for a steward to decide
MAYBE_ANNA = {
    "first_name": "Anna",
    "last_name": "Muller",
    "email": "z@example.net",
    "postcode": "10115",
    "date_of_birth": "1981-05-02",
}
OTTO = {"first_name": "Otto", "last_name": "Schmidt", "email": "o@example.net", "postcode": "20095"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as made:
        db = Database(made)
        await db.start()
        await db.close()
        yield made


@pytest.fixture
async def service(url: str) -> AsyncIterator[MdmService]:
    db = Database(url)
    try:
        yield MdmService(db, CONFIG)
    finally:
        await db.close()


async def _count(db: Database, table: Any, *where: Any) -> int:
    query = select(func.count()).select_from(table).where(*where)
    return int(await db.run(lambda conn: conn.execute(query).scalar_one()))


async def test_a_new_record_gets_the_deterministic_id_and_keeps_it(service: MdmService) -> None:
    first = await service.match_record("customer", "shop", "1", ANNA)
    assert first.decision is Decision.NEW
    assert first.golden_id == DeterministicResolver().golden_id("customer", "shop", "1")
    again = await service.match_record("customer", "shop", "1", ANNA)
    assert (again.decision, again.golden_id) == (Decision.KNOWN, first.golden_id)
    assert await service.resolve("customer", "shop", "1") == first.golden_id
    # an entity without a match configuration: crosswalk and a deterministic id only
    product = await service.match_record("product", "shop", "sku-1", {"name": "Mug"})
    assert product.decision is Decision.NEW
    assert product.golden_id == DeterministicResolver().golden_id("product", "shop", "sku-1")


async def test_rule_link_score_link_review_and_new(service: MdmService) -> None:
    db = service.db
    anna = await service.resolve("customer", "shop", "1", ANNA)

    by_rule = await service.match_record(
        "customer", "erp", "P-9", {"email": " Anna.Mueller@EXAMPLE.com ", "last_name": "M."}
    )
    assert (by_rule.decision, by_rule.golden_id, by_rule.linked_by) == (
        Decision.LINK,
        anna,
        "rule:same-email",
    )
    by_score = await service.match_record("customer", "crm", "c-7", ANNA_CRM)
    assert by_score.decision is Decision.LINK and by_score.golden_id == anna
    assert by_score.linked_by is not None and by_score.linked_by.startswith("match:0.99")

    review = await service.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    assert review.decision is Decision.REVIEW and review.golden_id != anna
    assert review.review_id is not None
    task = await db.run(
        lambda conn: conn.execute(
            select(mdm_reviews).where(mdm_reviews.c.id == review.review_id)
        ).one()
    )
    assert task.status == "open" and task.golden_id == review.golden_id
    assert [c["golden_id"] for c in task.candidates] == [anna]
    assert {part["field"] for part in task.explanation} >= {"first_name", "date_of_birth"}

    otto = await service.match_record("customer", "shop", "2", OTTO)
    assert otto.decision is Decision.NEW and otto.golden_id not in (anna, review.golden_id)

    links = await db.run(
        lambda conn: conn.execute(
            select(crosswalk.c.system, crosswalk.c.external_id, crosswalk.c.linked_by)
            .where(crosswalk.c.golden_id == anna)
            .order_by(crosswalk.c.id)
        ).all()
    )
    assert [(s, e) for s, e, _ in links] == [("shop", "1"), ("erp", "P-9"), ("crm", "c-7")]
    history = await db.run(
        lambda conn: conn.execute(
            select(mdm_history.c.action, mdm_history.c.actor)
            .where(mdm_history.c.golden_id == anna)
            .order_by(mdm_history.c.id)
        ).all()
    )
    assert [a for a, _ in history] == ["new", "link", "link"]
    assert history[1].actor == "rule:same-email"


async def test_survivorship_keeps_provenance(service: MdmService) -> None:
    anna = await service.resolve("customer", "shop", "1", ANNA)
    await service.resolve(
        "customer",
        "erp",
        "P-9",
        {"email": "anna.mueller@example.com", "company": "Müller GmbH", "tax_id": "DE123"},
    )
    await service.resolve("customer", "crm", "c-1", {**ANNA, "company": "Mueller"})
    fields = await service.db.run(
        lambda conn: conn.execute(
            select(mdm_golden.c.fields).where(mdm_golden.c.golden_id == anna)
        ).scalar_one()
    )
    # company: source_priority [erp, crm, shop]: the ERP's, though the CRM's came later
    assert fields["company"]["value"] == "Müller GmbH"
    assert (fields["company"]["system"], fields["company"]["source_id"]) == ("erp", "P-9")
    assert fields["company"]["rule"] == "source_priority"
    assert fields["tax_id"]["system"] == "erp"
    # phone: most_recent: the CRM's record came last
    assert fields["phone"]["system"] == "crm" and fields["phone"]["at"]
    # names: source_priority [shop, ...]: as the customer typed them in the shop
    assert (fields["first_name"]["system"], fields["first_name"]["rule"]) == (
        "shop",
        "source_priority",
    )
    # a known record's new attributes are survived again
    await service.resolve("customer", "erp", "P-9", {"email": "anna.mueller@example.com"})
    fields = await service.db.run(
        lambda conn: conn.execute(
            select(mdm_golden.c.fields).where(mdm_golden.c.golden_id == anna)
        ).scalar_one()
    )
    assert fields["company"]["value"] == "Mueller" and fields["company"]["system"] == "crm"


async def test_merge_relinks_follows_and_unmerge_restores_exactly(service: MdmService) -> None:
    db = service.db
    published: list[Any] = []

    async def publish(entity: str, event: Any) -> None:
        published.append(event)

    service.publish = publish
    changes: list[Any] = []
    service.on_change(changes.append)
    anna = await service.resolve("customer", "shop", "1", ANNA)
    other = await service.resolve("customer", "crm", "c-8", MAYBE_ANNA)
    await service.resolve("customer", "erp", "e-8", {**MAYBE_ANNA, "tax_id": "X1"})
    assert await service.resolve("customer", "erp", "e-8") == other  # same e-mail: linked

    def crosswalk_rows(conn: Any) -> list[Any]:
        return conn.execute(
            select(
                crosswalk.c.system,
                crosswalk.c.external_id,
                crosswalk.c.golden_id,
                crosswalk.c.linked_at,
                crosswalk.c.linked_by,
                crosswalk.c.reason,
            ).order_by(crosswalk.c.id)
        ).all()

    before = await db.run(crosswalk_rows)
    history_id = await service.merge("customer", anna, other, actor="steward:ann", reason="same")
    assert await service.resolve("customer", "crm", "c-8") == anna
    assert await service.resolve("customer", "erp", "e-8") == anna
    merged = await db.run(
        lambda conn: conn.execute(select(mdm_golden).where(mdm_golden.c.golden_id == other)).one()
    )
    assert (merged.status, merged.merged_into) == ("merged", anna)
    fields = await db.run(
        lambda conn: conn.execute(
            select(mdm_golden.c.fields).where(mdm_golden.c.golden_id == anna)
        ).scalar_one()
    )
    assert fields["tax_id"]["value"] == "X1"  # survivorship now sees the merged records
    # a new record matching the merged one's records lands on the survivor
    assert await service.resolve("customer", "pos", "9", {"email": "z@example.net"}) == anna

    # the events: one per key, the merged id's first
    assert [(e.type, e.key) for e in published] == [
        ("hub.customer.merged", other),
        ("hub.customer.merged", anna),
        ("hub.customer", anna),  # the golden record the merge left, for the systems to follow
    ]
    golden = json.loads(published[2].data)
    assert golden["id"] == anna
    assert golden["external_refs"] == [
        {"system": "shop", "id": "1"},
        {"system": "crm", "id": "c-8"},
        {"system": "erp", "id": "e-8"},
    ]
    assert (golden["phone"], golden["email"]) == ("+4915123456789", "z@example.net")
    assert published[2].extensions == {"hubconnection": "mdm", "hubsystem": "mdm"}
    data = json.loads(published[0].data)
    assert (data["survivor"], data["merged"], data["history_id"]) == (anna, other, history_id)
    assert sorted((r["system"], r["id"]) for r in data["refs"]) == [("crm", "c-8"), ("erp", "e-8")]
    assert published[0].id != published[1].id
    assert [(c.action, c.survivor, c.merged) for c in changes] == [("merge", anna, other)]
    assert [c.history_id for c in await service.changes_since(0)] == [history_id]
    assert await service.last_change() == history_id

    with pytest.raises(MdmRefused, match="merged into"):
        await service.merge("customer", anna, other, actor="steward:ann")
    with pytest.raises(MdmRefused) as unknown:
        await service.merge("customer", anna, "cus_nope", actor="steward:ann")
    assert unknown.value.status == 404

    await service.unmerge("customer", other, actor="steward:bob", reason="not the same")
    after = await db.run(crosswalk_rows)
    moved_back = [r for r in after if (r.system, r.external_id) != ("pos", "9")]
    assert moved_back == before  # golden id, linked_at, linked_by and reason as they were
    assert [(e.type, e.key) for e in published[3:]] == [
        ("hub.customer.unmerged", other),
        ("hub.customer.unmerged", anna),
        ("hub.customer", other),  # each system gets its own golden record back
        ("hub.customer", anna),
    ]
    split = {e.key: json.loads(e.data) for e in published[5:]}
    assert split[other]["external_refs"] == [
        {"system": "crm", "id": "c-8"},
        {"system": "erp", "id": "e-8"},
    ]
    assert split[anna]["external_refs"] == [
        {"system": "shop", "id": "1"},
        {"system": "pos", "id": "9"},
    ]
    assert split[anna]["first_name"] == "Anna" and split[anna]["last_name"] == "Müller"
    again = await db.run(
        lambda conn: conn.execute(select(mdm_golden).where(mdm_golden.c.golden_id == other)).one()
    )
    assert (again.status, again.merged_into) == ("active", None)
    assert again.fields["tax_id"]["value"] == "X1"
    with pytest.raises(MdmRefused, match="is not merged"):
        await service.unmerge("customer", other, actor="steward:bob")
    actions = await db.run(
        lambda conn: (
            conn.execute(
                select(mdm_history.c.action)
                .where(mdm_history.c.golden_id == other)
                .order_by(mdm_history.c.id)
            )
            .scalars()
            .all()
        )
    )
    assert actions == ["review", "link", "merge", "unmerge"]


async def test_a_linked_records_deterministic_id_keeps_resolving_across_merges(
    service: MdmService,
) -> None:
    """An id published before MDM was switched on (DeterministicResolver's) stays valid when
    the record is linked to another golden record: it resolves there, through merges and
    unmerges of that golden record, and is refused as a merge or unmerge operand."""
    derived = DeterministicResolver().golden_id
    anna = await service.resolve("customer", "shop", "1", ANNA)
    assert anna == derived("customer", "shop", "1")  # new: its own derived id, no alias
    crm = await service.match_record("customer", "crm", "c-7", ANNA_CRM)
    assert (crm.decision, crm.golden_id) == (Decision.LINK, anna)
    old = derived("customer", "crm", "c-7")
    assert old != anna

    alias = await service.golden("customer", old)
    assert alias is not None
    assert (alias["status"], alias["merged_into"], alias["resolves_to"]) == ("alias", anna, anna)
    assert alias["crosswalk"] == [] and alias["fields"] == {}
    record = await service.golden("customer", anna)
    assert record is not None
    link = next(h for h in record["history"] if h["action"] == "link")
    assert link["detail"]["alias"] == old
    # a record kept apart for review has its own derived id: a golden record, not an alias
    review = await service.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    assert review.decision is Decision.REVIEW
    own = await service.golden("customer", derived("customer", "crm", "c-8"))
    assert own is not None and (own["status"], own["resolves_to"]) == ("active", review.golden_id)

    # the golden record it points at is merged away and back: the old id follows
    otto = await service.resolve("customer", "shop", "2", OTTO)
    await service.merge("customer", otto, anna, actor="steward:ann")
    followed = await service.golden("customer", old)
    assert followed is not None and followed["resolves_to"] == otto
    assert await service.resolve("customer", "crm", "c-7") == otto
    await service.unmerge("customer", anna, actor="steward:ann")
    restored = await service.golden("customer", old)
    assert restored is not None
    assert (restored["status"], restored["merged_into"], restored["resolves_to"]) == (
        "alias",
        anna,
        anna,
    )
    assert await service.resolve("customer", "crm", "c-7") == anna

    # an alias is no golden record to merge (409), and nothing changed (its unmerge undoes
    # the link: test_unmerging_a_linked_records_alias_...)
    for attempt in (
        service.merge("customer", anna, old, actor="steward:ann"),
        service.merge("customer", old, otto, actor="steward:ann"),
    ):
        with pytest.raises(MdmRefused, match="deterministic id") as refused:
            await attempt
        assert refused.value.status == 409
    assert (await service.golden("customer", old) or {}).get("resolves_to") == anna
    quality = await service.quality("customer")
    assert quality["golden_records"] == {"active": 3, "merged": 0, "aliases": 1}


async def test_unmerging_a_linked_records_alias_undoes_the_link_and_a_merge_brings_it_back(
    service: MdmService,
) -> None:
    """A record linked by matching (not merged by a steward) is unmerged by its alias: it gets
    its own golden record again, under the id it had before the link; merging it back is an
    ordinary merge. Each step publishes the golden records it leaves (hub.mdm_follow)."""
    published: list[Any] = []

    async def publish(entity: str, event: Any) -> None:
        published.append(event)

    service.publish = publish
    derived = DeterministicResolver().golden_id
    anna = await service.resolve("customer", "shop", "1", ANNA)
    crm = {**ANNA, "first_name": "ANNA", "last_name": "Muller", "phone": "+49 151 2345 6789"}
    assert await service.resolve("customer", "crm", "c-7", crm) == anna  # same e-mail
    old = derived("customer", "crm", "c-7")

    history_id = await service.unmerge("customer", old, actor="steward:ann", reason="two people")
    assert await service.resolve("customer", "crm", "c-7") == old
    assert await service.resolve("customer", "shop", "1") == anna
    record = await service.golden("customer", old)
    assert record is not None
    assert (record["status"], record["resolves_to"]) == ("active", old)
    assert record["fields"]["first_name"]["value"] == "ANNA"  # its own record's values
    assert [(e.type, e.key) for e in published] == [
        ("hub.customer.unmerged", old),
        ("hub.customer.unmerged", anna),
        ("hub.customer", old),
        ("hub.customer", anna),
    ]
    data = json.loads(published[0].data)
    assert (data["survivor"], data["merged"], data["history_id"]) == (anna, old, history_id)
    assert data["refs"] == [{"system": "crm", "id": "c-7"}]
    documents = {e.key: json.loads(e.data) for e in published[2:]}
    assert documents[old]["external_refs"] == [{"system": "crm", "id": "c-7"}]
    assert documents[old]["first_name"] == "ANNA"
    assert documents[old]["phone"] == "+4915123456789"  # E.164: the coding standard
    assert documents[anna]["external_refs"] == [{"system": "shop", "id": "1"}]
    with pytest.raises(MdmRefused, match="is not merged"):
        await service.unmerge("customer", old, actor="steward:ann")

    # merged back by a steward: an ordinary merge, undone by an ordinary unmerge
    published.clear()
    await service.merge("customer", anna, old, actor="steward:ann")
    assert await service.resolve("customer", "crm", "c-7") == anna
    assert [(e.type, e.key) for e in published] == [
        ("hub.customer.merged", old),
        ("hub.customer.merged", anna),
        ("hub.customer", anna),
    ]
    assert json.loads(published[2].data)["external_refs"] == [
        {"system": "shop", "id": "1"},
        {"system": "crm", "id": "c-7"},
    ]
    await service.unmerge("customer", old, actor="steward:ann")
    assert await service.resolve("customer", "crm", "c-7") == old

    # an alias whose record left its golden record otherwise is refused, changing nothing
    other = await service.resolve("customer", "shop", "2", OTTO)
    assert await service.resolve("customer", "crm", "c-9", {"email": OTTO["email"]}) == other
    second = derived("customer", "crm", "c-9")
    await service.merge("customer", anna, other, actor="steward:ann")
    assert await service.resolve("customer", "crm", "c-9") == anna
    await service.unmerge("customer", second, actor="steward:ann")  # found where merges took it
    assert await service.resolve("customer", "crm", "c-9") == second


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


async def test_a_batch_larger_than_a_prefetch_links_across_its_chunks(
    service: MdmService,
) -> None:
    """A batch of more records than are matched per block prefetch (on PostgreSQL the next
    records' blocks are fetched while the earlier ones are matched): a record late in the batch
    links to a stored record and to one early in the same batch, and nothing else links."""
    anna = await service.resolve("customer", "shop", "1", ANNA)

    def word(seed: str) -> str:  # a made-up name: strangers share no more than chance
        return hashlib.sha256(seed.encode()).hexdigest()[:10].translate(_LETTERS).title()

    strangers = [
        (
            "shop",
            f"s{i}",
            {"first_name": word(f"f{i}"), "last_name": word(f"l{i}"), "email": f"{i}@x.example"}
            | {"postcode": str(30000 + i), "country": "DE"},
        )
        for i in range(300)
    ]
    batch = [("shop", "2", OTTO), *strangers[:150], ("crm", "c-1", ANNA_CRM), *strangers[150:]]
    batch.append(("crm", "c-2", OTTO))  # Otto again, from the CRM: his e-mail links him
    got = (await service.resolve_many("customer", batch)).resolutions
    assert got[("crm", "c-1")].golden_id == anna
    assert got[("crm", "c-1")].decision is Decision.LINK
    assert got[("crm", "c-2")].golden_id == got[("shop", "2")].golden_id
    assert got[("crm", "c-2")].decision is Decision.LINK
    assert {got[(s, x)].decision for s, x, _ in strangers} == {Decision.NEW}
    assert len({got[(s, x)].golden_id for s, x, _ in strangers}) == 300
    assert await _count(service.db, mdm_golden, mdm_golden.c.status == "active") == 302


async def test_a_batch_pauses_the_garbage_collector_and_leaves_it_as_it_found_it(
    service: MdmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic garbage collector is paused while a batch of new records is matched and
    stored, and enabled again after it, after a failed one too; one that someone else had
    disabled stays disabled."""
    assert gc.isenabled()
    seen: list[bool] = []
    store = service._store_new

    def watched(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return store(*args)

    monkeypatch.setattr(service, "_store_new", watched)
    await service.resolve_many("customer", [("shop", "1", ANNA), ("shop", "2", OTTO)])
    assert seen == [False]
    assert gc.isenabled()

    def failing(*args: Any) -> Any:
        raise RuntimeError("the store failed")

    monkeypatch.setattr(service, "_store_new", failing)
    with pytest.raises(RuntimeError, match="the store failed"):
        await service.resolve_many("customer", [("shop", "3", MAYBE_ANNA)])
    assert gc.isenabled()

    monkeypatch.setattr(service, "_store_new", watched)
    gc.disable()
    try:
        await service.resolve_many("customer", [("crm", "c-1", ANNA_CRM)])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert seen == [False, False]


async def test_events_wait_in_the_outbox_until_a_publisher_takes_them(
    service: MdmService,
) -> None:
    anna = await service.resolve("customer", "shop", "1", ANNA)
    otto = await service.resolve("customer", "shop", "2", OTTO)
    await service.merge("customer", anna, otto, actor="steward:ann")
    published: list[Any] = []

    async def failing(entity: str, event: Any) -> None:
        raise ConnectionError("broker down")

    service.publish = failing
    with pytest.raises(ConnectionError):
        await service.publish_pending()

    async def publish(entity: str, event: Any) -> None:
        published.append(event)

    service.publish = publish
    assert await service.publish_pending() == 1
    assert [e.key for e in published] == [otto, anna, anna]  # the change, then the golden record
    assert await service.publish_pending() == 0


# -- concurrency: several connections and processes see the same new customer at once --------


async def _race(url: str, records: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Each record resolved by its own Database (its own connections), all at once."""
    dbs = [Database(url) for _ in records]
    try:
        services = [MdmService(db, CONFIG) for db in dbs]
        return list(
            await asyncio.gather(
                *(
                    s.resolve("customer", system, ext, attrs)
                    for s, (system, ext, attrs) in zip(services, records, strict=True)
                )
            )
        )
    finally:
        for db in dbs:
            await db.close()


async def test_racing_connections_make_exactly_one_golden_record(url: str) -> None:
    same = await _race(url, [("shop", "1", ANNA)] * 6)
    assert len(set(same)) == 1
    near = await _race(
        url,
        [("crm", "c-1", ANNA_CRM), ("erp", "e-1", {**ANNA_CRM, "email": "x@example.org"})] * 3
        + [("pos", "p-1", {**ANNA_CRM, "email": "anna.mueller@example.com"})],
    )
    assert set(near) == set(same)  # all linked to the one golden record
    db = Database(url)
    try:
        assert await _count(db, mdm_golden, mdm_golden.c.status == "active") == 1
        # each linked record's deterministic id: an alias of it, once
        assert await _count(db, mdm_golden, mdm_golden.c.status == "alias") == 3
        assert await _count(db, crosswalk) == 4
    finally:
        await db.close()


async def test_two_near_duplicates_racing_as_new_customers_match_each_other(url: str) -> None:
    golden = await _race(url, [("shop", "1", ANNA), ("crm", "c-1", ANNA_CRM)])
    assert golden[0] == golden[1]
    db = Database(url)
    try:
        assert await _count(db, mdm_golden, mdm_golden.c.status == "active") == 1
        assert await _count(db, mdm_keys, mdm_keys.c.kind == "block") > 0
    finally:
        await db.close()


async def test_racing_batches_make_exactly_one_golden_record_per_person(url: str) -> None:
    """Batches (one transaction each, as mappers resolve a consumed batch) racing on the same
    people in different orders: each person gets one golden record."""
    people = [("shop", "1", ANNA), ("crm", "c-1", ANNA_CRM), ("shop", "2", OTTO)]
    batches = [people, people[::-1], people[1:] + people[:1], people]
    dbs = [Database(url) for _ in batches]
    try:
        services = [MdmService(db, CONFIG) for db in dbs]
        answers = await asyncio.gather(
            *(s.resolve_many("customer", batch) for s, batch in zip(services, batches, strict=True))
        )
    finally:
        for db in dbs:
            await db.close()
    for answer in answers:
        got = {ref: r.golden_id for ref, r in answer.resolutions.items()}
        assert got[("shop", "1")] == got[("crm", "c-1")] != got[("shop", "2")]
    assert len({a.resolutions[("shop", "1")].golden_id for a in answers}) == 1
    db = Database(url)
    try:
        assert await _count(db, mdm_golden, mdm_golden.c.status == "active") == 2
        assert await _count(db, crosswalk) == 3
    finally:
        await db.close()


async def test_batches_linking_records_to_one_golden_record_at_once_both_succeed(url: str) -> None:
    """Two batches (their own connections) each link a new record to the same golden record by
    different keys (so their key locks do not serialise them): both must commit. With the
    golden row read FOR SHARE, each waited for the other's share lock to write survivorship
    and PostgreSQL failed one in most rounds ("deadlock detected")."""
    main = Database(url)
    try:
        service = MdmService(main, CONFIG)
        surnames = ["Müller", "Schmidt", "Wagner", "Becker", "Hoffmann", "Schulz"]
        for i, surname in enumerate(surnames):  # a different person each round
            email = f"anna{i}@example.com"
            person = {
                "last_name": surname,
                "date_of_birth": f"197{i}-04-02",
                "postcode": f"2{i}115",
                "phone": f"0151 2345678{i}",
                "street": f"Ring {i + 10}",
            }
            anna = await service.resolve(
                "customer", "shop", f"a{i}", {**ANNA, **person, "email": email}
            )
            dbs = [Database(url) for _ in range(2)]
            try:
                racers = [MdmService(db, CONFIG) for db in dbs]
                answers = await asyncio.gather(
                    racers[0].resolve_many(  # linked by the e-mail rule
                        "customer", [("erp", f"e{i}", {"email": email, "last_name": "M."})]
                    ),
                    racers[1].resolve_many(  # linked by the score
                        "customer",
                        [("crm", f"c{i}", {**ANNA_CRM, **person, "email": f"x{i}@example.org"})],
                    ),
                )
            finally:
                for db in dbs:
                    await db.close()
            assert answers[0].resolutions[("erp", f"e{i}")].golden_id == anna
            assert answers[1].resolutions[("crm", f"c{i}")].golden_id == anna
            record = await service.golden("customer", anna)
            assert record is not None
            assert {(r["system"], r["id"]) for r in record["external_refs"]} >= {
                ("shop", f"a{i}"),
                ("erp", f"e{i}"),
                ("crm", f"c{i}"),
            }
    finally:
        await main.close()


RACER = """
import asyncio, json, os, sys, time
from pathlib import Path
from hub.db import Database
from hub.matching import load_match_config
from hub.mdm_service import ChangeWatcher, MdmService

url, go, system, ext, attrs = sys.argv[1:6]
async def main():
    db = Database(url)
    service = MdmService(db, load_match_config(Path("examples/mdm.yaml")))
    await service.resolve("product", "warm", str(os.getpid()))  # connected, imported: ready
    while not os.path.exists(go):
        time.sleep(0.005)
    print(await service.resolve("customer", system, ext, json.loads(attrs)))
    await db.close()
asyncio.run(main())
"""


async def test_racing_processes_make_exactly_one_golden_record(url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    records = [("shop", "1", ANNA), ("crm", "c-1", ANNA_CRM)] * 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            *[sys.executable, "-c", RACER, url, str(go), system, ext, json.dumps(attrs)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for system, ext, attrs in records
    ]
    db = Database(url)

    async def ready() -> bool:  # every racer resolved its warm-up record: at the start line
        return await _count(db, crosswalk, crosswalk.c.entity == "product") == len(procs)

    try:
        await until(ready, timeout_s=120)
        go.touch()
        outs = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0] * len(procs), [e for _, e in outs]
        assert len({out.strip() for out, _ in outs}) == 1
        active = (mdm_golden.c.entity == "customer", mdm_golden.c.status == "active")
        assert await _count(db, mdm_golden, *active) == 1
        assert await _count(db, crosswalk, crosswalk.c.entity == "customer") == 2
    finally:
        await db.close()


def test_hub_yaml_names_the_match_configuration_and_its_errors_have_file_and_line(
    tmp_path: Path,
) -> None:
    hub_yaml = tmp_path / "hub.yaml"
    hub_yaml.write_text(f"mdm: {ROOT / 'examples' / 'mdm.yaml'}\n")
    config = load_config(hub_yaml)
    assert config.mdm is not None and "customer" in config.mdm.entities
    broken = tmp_path / "mdm.yaml"
    broken.write_text("entities:\n  customer:\n    fields:\n      email: nonsense\n")
    hub_yaml.write_text("mdm: mdm.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_config(hub_yaml)
    assert str(broken) in str(caught.value)
    assert ":4" in str(caught.value)  # the line of the bad normaliser
    hub_yaml.write_text("mdm: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_config(hub_yaml)


async def test_a_watcher_in_another_process_hears_of_merges_and_unmerges(url: str) -> None:
    here, there = Database(url), Database(url)
    try:
        service = MdmService(here, CONFIG)
        anna = await service.resolve("customer", "shop", "1", ANNA)
        otto = await service.resolve("customer", "shop", "2", OTTO)
        heard: list[Any] = []
        watcher = ChangeWatcher(MdmService(there, CONFIG), heard.extend, interval_s=0.05)
        await watcher.start()
        try:
            assert await watcher.poll() == []  # nothing since it started
            await service.merge("customer", anna, otto, actor="steward:ann")
            await service.unmerge("customer", otto, actor="steward:ann")

            async def both() -> bool:
                return len(heard) == 2

            await until(both)
            assert [(c.action, c.survivor, c.merged) for c in heard] == [
                ("merge", anna, otto),
                ("unmerge", anna, otto),
            ]
        finally:
            await watcher.stop()
    finally:
        await here.close()
        await there.close()


async def test_the_database_index_counts_names_for_term_frequencies(url: str) -> None:
    text = (ROOT / "examples" / "mdm.yaml").read_text()
    text = text.replace(
        "      last_name:\n        comparator: name\n",
        "      last_name:\n        comparator: name\n        term_frequency: true\n",
    )
    config = load_match_config(Path("mdm.yaml"), text)
    db = Database(url)
    try:
        service = MdmService(db, config)
        town = [
            (
                "shop",
                str(i),
                {"first_name": f"P{i}", "last_name": "Müller", "email": f"p{i}@example.com"}
                | {"postcode": "10115", "country": "DE"},
            )
            for i in range(20)
        ]
        await service.resolve_many("customer", town)
        found = await service.match_record(
            "customer",
            "crm",
            "c-1",
            {"first_name": "Zed", "last_name": "MULLER", "postcode": "10115", "country": "DE"},
        )
        assert found.result is not None
        part = next(f for f in found.result.fields if f.field == "last_name")
        assert part.level.endswith("(term frequency)")
        exact = config.entities["customer"].comparisons
        level = next(c for c in exact if c.field == "last_name").levels[0]
        assert part.weight == pytest.approx(tf_weight(level, 20, 20))  # 20 of 20 records
        assert part.weight < level.weight  # a common name weighs less than configured
    finally:
        await db.close()


def test_a_new_golden_records_fields_are_what_survivorship_gives_one_source() -> None:
    """The shortcut for a new golden record (one source) stores what survive() would."""
    from datetime import UTC, datetime

    from hub.matching import FieldRule, SourceRecord, SurvivorshipRules, survive
    from hub.mdm_service import _provenance, _provenance_of_one

    rules = SurvivorshipRules(
        FieldRule("most_complete"),
        {"email": FieldRule("source_priority", ("crm",)), "phone": FieldRule("most_recent")},
    )
    record = SourceRecord(
        "shop",
        "s-1",
        datetime(2026, 1, 2, tzinfo=UTC),
        {"email": "a@b.example", "phone": "", "name": None, "tags": [], "zip": "1", "n": 0},
    )
    expected = _provenance(survive("g", [record], rules))
    assert _provenance_of_one(record, rules) == expected
    assert list(_provenance_of_one(record, rules)) == list(expected) == ["email", "n", "zip"]
