"""The crosswalk (hub/crosswalk.py) on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from hub.crosswalk import Crosswalk
from hub.db import Database, crosswalk
from hub.errors import CrosswalkConflict, MdmRefused
from hub.mdm import DeterministicResolver
from hub.mdm_service import MdmService

from .support.databases import drop_postgres_database, new_postgres_database
from .test_db import db  # noqa: F401
from .test_mdm_service import ANNA, CONFIG, OTTO


async def test_link_lookup_and_reverse(db: Database) -> None:  # noqa: F811
    await db.start()
    cw = Crosswalk(db)
    link = await cw.link(
        "customer", "crm", "c-42", "cus_1", linked_by="sink:crm", reason="created", version="1"
    )
    assert (link.golden_id, link.linked_by, link.reason, link.version) == (
        "cus_1",
        "sink:crm",
        "created",
        "1",
    )
    assert await cw.lookup("customer", "crm", "c-42") == "cus_1"
    assert await cw.reverse("customer", "crm", "cus_1") == "c-42"
    # another entity, system or id is another key
    assert await cw.lookup("order", "crm", "c-42") is None
    assert await cw.lookup("customer", "erp", "c-42") is None
    assert await cw.reverse("customer", "erp", "cus_1") is None
    assert await cw.lookup_many([]) == {}


async def test_link_is_idempotent_and_keeps_the_newest_version(db: Database) -> None:  # noqa: F811
    await db.start()
    cw = Crosswalk(db)
    first = await cw.link("customer", "crm", "c-1", "cus_1", linked_by="sink:crm", version="1")
    again = await cw.link("customer", "crm", "c-1", "cus_1", linked_by="rule:email")
    assert again.linked_by == "sink:crm" and again.linked_at == first.linked_at  # unchanged
    assert again.version == "1"  # no version given: the stored one stays
    newer = await cw.link("customer", "crm", "c-1", "cus_1", linked_by="sink:crm", version="2")
    assert newer.version == "2"
    assert [link.version for link in await cw.links("customer", "cus_1")] == ["2"]


async def test_an_id_linked_to_another_golden_id_is_never_relinked(db: Database) -> None:  # noqa: F811
    await db.start()
    cw = Crosswalk(db)
    await cw.link("customer", "crm", "c-1", "cus_1", linked_by="sink:crm")
    with pytest.raises(
        CrosswalkConflict, match=r"customer 'c-1' in crm is linked to cus_1, not cus_2"
    ) as caught:
        await cw.link("customer", "crm", "c-1", "cus_2", linked_by="sink:crm")
    assert caught.value.linked_to == "cus_1"
    assert await cw.lookup("customer", "crm", "c-1") == "cus_1"


async def test_many_at_once_and_the_first_linked_id_answers_the_reverse_lookup(
    db: Database,  # noqa: F811
) -> None:
    await db.start()
    cw = Crosswalk(db)
    for i in range(1200):  # more than one statement's worth of keys
        await cw.link("product", "erp", f"p-{i}", f"prd_{i % 600}", linked_by="sink:erp")
    refs = [("product", "erp", f"p-{i}") for i in range(0, 1300, 7)]
    found = await cw.lookup_many(refs)
    assert found == {r: f"prd_{int(r[2][2:]) % 600}" for r in refs if int(r[2][2:]) < 1200}
    # prd_5 is known in the ERP twice (a duplicate there): the first linked answers
    assert await cw.reverse("product", "erp", "prd_5") == "p-5"
    reverse = await cw.reverse_many([("product", "erp", f"prd_{i}") for i in (1, 2, 999)])
    assert reverse == {("product", "erp", "prd_1"): "p-1", ("product", "erp", "prd_2"): "p-2"}


@pytest.mark.postgres
async def test_racing_links_on_postgresql_give_one_golden_id() -> None:
    """Several processes' connections link the same new external id at once: one row, no error
    for those agreeing; of racers disagreeing, exactly one wins and the others are refused."""
    url, name = await new_postgres_database()
    databases = [Database(url) for _ in range(6)]
    try:
        await databases[0].start()
        for d in databases:  # every engine connected before the race
            assert await d.ping()
        for round_ in range(5):
            same = [
                Crosswalk(d).link("customer", "crm", f"same-{round_}", "cus_1", linked_by=f"p{i}")
                for i, d in enumerate(databases)
            ]
            links = await asyncio.gather(*same)
            assert {link.golden_id for link in links} == {"cus_1"}
            assert len({link.linked_by for link in links}) == 1  # all read the winner's row

            differ = [
                Crosswalk(d).link("customer", "crm", f"differ-{round_}", f"cus_{i}", linked_by="x")
                for i, d in enumerate(databases)
            ]
            results = await asyncio.gather(*differ, return_exceptions=True)
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1
            assert all(isinstance(e, CrosswalkConflict) for e in lost) and len(lost) == 5
            assert {e.linked_to for e in lost if isinstance(e, CrosswalkConflict)} == {
                won[0].golden_id
            }
        async with databases[0].engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(crosswalk))).scalar()
        assert rows == 10
    finally:
        for d in databases:
            await d.close()
        await drop_postgres_database(name)


async def test_source_links_are_batched_and_yield_to_a_sinks_link(db: Database) -> None:  # noqa: F811
    await db.start()
    xwalk = Crosswalk(db)
    stored = await xwalk.link_many(
        [("order", "shopify", "450789469", "ord_1"), ("customer", "crm", "c-9", "cus_echo")],
        linked_by="source",
        reason="the id the object came in under",
    )
    assert {(s.external_id, s.golden_id, s.linked_by) for s in stored} == {
        ("450789469", "ord_1", "source"),
        ("c-9", "cus_echo", "source"),
    }
    # linked again (another batch, another process): nothing changes, what is stored comes back
    await xwalk.link("order", "shopify", "450789469", "ord_1", linked_by="test")
    [again] = await xwalk.link_many(
        [("order", "shopify", "450789469", "ord_other")], linked_by="source", reason="r"
    )
    assert again.golden_id == "ord_1"
    # the CRM's echo of a contact the hub created was heard before the sink's report: the sink's
    # link (what the hub created it for) replaces the source link
    link = await xwalk.link("customer", "crm", "c-9", "cus_real", linked_by="sink:crm")
    assert (link.golden_id, link.linked_by) == ("cus_real", "sink:crm")
    assert await xwalk.lookup("customer", "crm", "c-9") == "cus_real"
    # ... but no other link ever moves
    with pytest.raises(CrosswalkConflict):
        await xwalk.link("customer", "crm", "c-9", "cus_third", linked_by="sink:crm")


async def test_a_sink_links_id_keeps_its_earlier_golden_id_resolving(db: Database) -> None:  # noqa: F811
    """The ERP's echo of a party the hub created is mapped before the sink reports the party's
    id: it went out under the id DeterministicResolver derives for the ERP's id. When the sink's
    link makes the party the hub's golden customer, that id stays valid, as the id of a record
    master data links does: an alias resolving to the golden customer, through its merges."""
    await db.start()
    service = MdmService(db, CONFIG)
    xwalk = Crosswalk(db)
    anna = await service.resolve("customer", "shop", "1", ANNA)
    otto = await service.resolve("customer", "shop", "2", OTTO)
    echoed = DeterministicResolver().golden_id("customer", "erp", "p-5")
    await xwalk.link_many(
        [("customer", "erp", "p-5", echoed)], linked_by="source", reason="came in under"
    )
    # a source link needs no alias: the crosswalk links the id to the id it got
    assert (await service.golden("customer", echoed) or {}).get("status") == "linked"

    reason = "created by the hub's delivery"
    await xwalk.link("customer", "erp", "p-5", anna, linked_by="sink:erp", reason=reason)
    alias = await service.golden("customer", echoed)
    assert alias is not None
    assert (alias["status"], alias["merged_into"], alias["resolves_to"]) == ("alias", anna, anna)
    [step] = alias["history"]
    assert (step["action"], step["actor"], step["reason"]) == ("alias", "sink:erp", reason)
    assert step["detail"] == {
        "alias": echoed,
        "golden_id": anna,
        "system": "erp",
        "external_id": "p-5",
    }
    # the delivery retried: linked again, nothing more written
    await xwalk.link("customer", "erp", "p-5", anna, linked_by="sink:erp", reason=reason)
    assert len((await service.golden("customer", echoed) or {})["history"]) == 1

    # merges and unmerges of the golden customer carry it along; it is no merge operand
    await service.merge("customer", otto, anna, actor="steward:ann")
    assert (await service.golden("customer", echoed) or {})["resolves_to"] == otto
    await service.unmerge("customer", anna, actor="steward:ann")
    assert (await service.golden("customer", echoed) or {})["resolves_to"] == anna
    with pytest.raises(MdmRefused, match="deterministic id"):
        await service.merge("customer", anna, echoed, actor="steward:ann")

    # no alias where none is needed: the link is the derived id, or is refused
    derived = DeterministicResolver().golden_id("product", "erp", "p-1")
    await xwalk.link("product", "erp", "p-1", derived, linked_by="sink:erp")
    with pytest.raises(CrosswalkConflict):
        await xwalk.link("customer", "erp", "p-5", otto, linked_by="sink:erp")
    quality = await service.quality()
    assert quality["golden_records"] == {"active": 2, "merged": 0, "aliases": 1}
