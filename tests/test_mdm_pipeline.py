"""MDM in the pipeline: the mapper's golden ids come from the MDM service (hub/mdm_resolver.py).

A whole hub over Tansu with ``mdm:`` in hub.yaml: a shop customer and a CRM contact that differ
in case, accents and phone format become canonical events with one golden id, each carrying
both systems' refs; each system keeps its own id in the crosswalk. And the resolver on its own,
on SQLite and PostgreSQL: one transaction per batch, no database at steady state, the
attributes taken from the canonical object, the MDM store down -> MasterDataUnavailable.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub.crosswalk import Crosswalk
from hub.db import Database, crosswalk, mdm_golden, mdm_history, retries
from hub.envelope import header_value
from hub.errors import MasterDataUnavailable
from hub.matching import load_match_config
from hub.mdm import DeterministicResolver, resolve_ahead
from hub.mdm_resolver import MdmResolver, match_attributes
from hub.mdm_service import MdmService
from hub.runtime import Hub

from .support.databases import database_url
from .support.harness import HubFactory, shopify_webhook, topic_records, until

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_match_config(ROOT / "examples" / "mdm.yaml")
derive = DeterministicResolver().golden_id

CUSTOMER = """
description: {what} -> canonical customer
source: {{connector: shopify, event: {event}}}
target: {{entity: customer}}
fields:
  id: golden_id('customer', meta.system, id)
  external_refs:
    - system: meta.system
      id: str(id)
  email: lower(trim(email))
  first_name: first_name
  last_name: last_name
  phone: phone
  addresses:
    each: addresses
    fields:
      line1: address1
      city: city
      postal_code: zip
      country: country_code
"""

HUB_YAML = """
mappings: {mappings}
mdm: {mdm}
connections:
  shop:
    connector: shopify
    system: shop
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  crmhooks:
    connector: shopify
    system: crm
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
routes:
  - name: shop-customers-in
    from: shop
    mapping: shop/customer
  - name: crm-contacts-in
    from: crmhooks
    mapping: crm/contact
"""

SHOP_ANNA = {
    "id": 1001,
    "email": "Anna.Mueller@Example.com",
    "first_name": "Anna",
    "last_name": "Müller",
    "phone": "+49 151 23456789",
    "addresses": [{"address1": "Hauptstraße 5", "city": "Berlin", "zip": "10115"}],
}
CRM_ANNA = {  # the same person typed into the CRM: case, accents, the phone's format
    "id": "c-9",
    "email": " anna.mueller@EXAMPLE.com",
    "first_name": "ANNA",
    "last_name": "Muller",
    "phone": "0151 2345 6789",
    "addresses": [{"address1": "Hauptstr. 5", "city": "berlin", "zip": "10115"}],
}
OTTO = {"id": 1002, "email": "otto@example.net", "first_name": "Otto", "last_name": "Schmidt"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A hub's state database: a SQLite file, or a fresh PostgreSQL database."""
    async with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def hub_on(hubs: HubFactory, tmp_path: Path, state_url: str) -> Hub:
    """The pipeline hub on either database."""
    return await pipeline_hub(hubs, tmp_path, database_url=state_url)


async def pipeline_hub(hubs: HubFactory, tmp_path: Path, **settings: Any) -> Hub:
    folder = tmp_path / "mappings"
    (folder / "shop").mkdir(parents=True)
    (folder / "crm").mkdir()
    (folder / "shop" / "customer.yaml").write_text(
        CUSTOMER.format(what="shop customers/create", event="customers/create")
    )
    (folder / "crm" / "contact.yaml").write_text(
        CUSTOMER.format(what="CRM contact webhook", event="customers/update")
    )
    config = HUB_YAML.format(mappings=folder, mdm=ROOT / "examples" / "mdm.yaml")
    return await hubs.start(config=config, **settings)


async def webhook(hub: Hub, body: dict[str, Any], connection: str, topic: str) -> None:
    await shopify_webhook(hub, body, topic, connection)


async def canonical(hub: Hub, count: int) -> list[Any]:
    topic = hub.settings.canonical_topic("customer")

    async def arrived() -> bool:
        return len(await topic_records(hub.bootstrap, topic)) >= count

    await until(arrived)
    return await topic_records(hub.bootstrap, topic)


async def test_a_shop_customer_and_a_crm_contact_get_one_golden_id(hub_on: Hub) -> None:
    hub = hub_on
    await webhook(hub, SHOP_ANNA, "shop", "customers/create")
    [first] = await canonical(hub, 1)
    golden = derive("customer", "shop", "1001")  # a new golden record: the deterministic id
    assert first.key.decode() == golden

    await webhook(hub, CRM_ANNA, "crmhooks", "customers/update")
    await webhook(hub, OTTO, "shop", "customers/create")
    records = await canonical(hub, 3)
    by_name = {json.loads(r.value)["last_name"]: r for r in records}
    crm = by_name["Muller"]
    assert crm.key.decode() == golden
    body = json.loads(crm.value)
    assert body["id"] == golden
    # its own ref first, then every other ref of the golden record
    assert body["external_refs"] == [
        {"system": "crm", "id": "c-9"},
        {"system": "shop", "id": "1001"},
    ]
    otto = json.loads(by_name["Schmidt"].value)
    assert otto["id"] == derive("customer", "shop", "1002") != golden

    rows = await hub.db.run(
        lambda conn: conn.execute(
            select(crosswalk.c.system, crosswalk.c.external_id, crosswalk.c.golden_id)
            .where(crosswalk.c.entity == "customer")
            .order_by(crosswalk.c.id)
        ).all()
    )
    assert [tuple(r) for r in rows] == [
        ("shop", "1001", golden),
        ("crm", "c-9", golden),
        ("shop", "1002", otto["id"]),
    ]
    link = await hub.mdm.lookup("customer", "crm", "c-9")
    assert link is not None and link["linked_by"] == "rule:same-email"
    record = await hub.mdm.golden("customer", golden)
    assert record is not None and record["fields"]["first_name"]["system"] in ("shop", "crm")

    # the shop's customer again, unchanged: the cached answer, nothing written
    history = await hub.db.run(
        lambda conn: conn.execute(select(func.count()).select_from(mdm_history)).scalar_one()
    )
    await webhook(hub, SHOP_ANNA, "shop", "customers/create")
    again = (await canonical(hub, 4))[-1]
    assert again.key.decode() == golden
    assert json.loads(again.value)["external_refs"] == [
        {"system": "shop", "id": "1001"},
        {"system": "crm", "id": "c-9"},
    ]
    assert history == await hub.db.run(
        lambda conn: conn.execute(select(func.count()).select_from(mdm_history)).scalar_one()
    )


FOLLOW_OUT = """
description: the golden record a merge or unmerge left, as a test destination shows it
source: {entity: customer}
target: {format: test-record}
fields:
  golden: id
  refs: external_refs
  first_name: first_name
  last_name: last_name
  phone: phone
"""

FOLLOW_ROUTES = """
  out:
    connector: file
    options: {{path: {out}}}
  raw:
    connector: file
    options: {{path: {raw}}}
  mapped:
    connector: file
    options: {{path: {mapped}}}
routes:
  - name: golden-out
    from: canonical.customer
    to: out
    mapping: out/customer
    when: "meta.system == 'mdm'"
  - name: everything-raw
    from: canonical.customer
    to: raw
  - name: every-customer-mapped
    from: canonical.customer
    to: mapped
    mapping: out/customer
"""


async def test_systems_follow_an_unmerge_and_a_merge_back(
    hubs: HubFactory, tmp_path: Path, state_url: str
) -> None:
    """A steward's unmerge of a linked record (by its alias) and the merge back publish the
    golden records they leave (hub.mdm_follow): a route with a mapping gets each as a customer
    and never the merge events themselves; a route without one gets both kinds."""
    folder = tmp_path / "mappings"
    for name, text in (
        ("shop/customer", CUSTOMER.format(what="shop", event="customers/create")),
        ("crm/contact", CUSTOMER.format(what="CRM", event="customers/update")),
        ("out/customer", FOLLOW_OUT),
    ):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.yaml").write_text(text)
    out, raw, mapped = (tmp_path / f"{name}.jsonl" for name in ("out", "raw", "mapped"))
    config = HUB_YAML.format(mappings=folder, mdm=ROOT / "examples" / "mdm.yaml").replace(
        "routes:\n", FOLLOW_ROUTES.format(out=out, raw=raw, mapped=mapped), 1
    )
    hub = await hubs.start(config=config, database_url=state_url)
    await webhook(hub, SHOP_ANNA, "shop", "customers/create")
    await webhook(hub, CRM_ANNA, "crmhooks", "customers/update")
    golden = derive("customer", "shop", "1001")
    alias = derive("customer", "crm", "c-9")

    def lines(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def raw_count(n: int) -> None:
        async def arrived() -> bool:
            return len(lines(raw)) >= n

        await until(arrived)

    await raw_count(2)
    assert lines(out) == []  # the shop's and the CRM's own changes: not the MDM's
    assert await hub.mdm.resolve("customer", "crm", "c-9") == golden

    await hub.mdm.unmerge("customer", alias, actor="steward:test")
    await raw_count(2 + 4)  # unmerged x2 (both keys), then both golden records

    async def written(n: int) -> list[dict[str, Any]]:
        async def arrived() -> bool:
            return len(lines(out)) >= n

        await until(arrived)
        return [line["data"] for line in lines(out)]

    split = {d["golden"]: d for d in await written(2)}
    assert split[alias]["refs"] == [{"system": "crm", "id": "c-9"}]
    assert split[alias]["first_name"] == "ANNA"
    assert split[alias]["phone"] == "+4915123456789"  # E.164 in the golden record
    assert split[golden]["refs"] == [{"system": "shop", "id": "1001"}]
    assert split[golden]["last_name"] == "Müller"

    await hub.mdm.merge("customer", golden, alias, actor="steward:test")
    together = (await written(3))[2]
    assert together["golden"] == golden
    assert together["refs"] == [{"system": "shop", "id": "1001"}, {"system": "crm", "id": "c-9"}]
    await raw_count(2 + 4 + 3)
    types = [line.get("type") for line in lines(raw)]
    assert types.count("hub.customer.unmerged") == 2 and types.count("hub.customer.merged") == 2
    assert len(lines(out)) == 3
    # a mapped route without a condition: every customer, never the merge events themselves

    async def all_mapped() -> bool:
        return len(lines(mapped)) >= 2 + 3

    await until(all_mapped)
    assert all(line["data"]["golden"] for line in lines(mapped))
    assert len(lines(mapped)) == 2 + 3


DOWN = {  # master data cannot store new records
    "sqlite": [
        "CREATE TRIGGER no_records BEFORE INSERT ON mdm_records "
        "BEGIN SELECT RAISE(ABORT, 'mdm down'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION mdm_down() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'mdm down'; END $$",
        "CREATE TRIGGER no_records BEFORE INSERT ON mdm_records "
        "FOR EACH ROW EXECUTE FUNCTION mdm_down()",
    ],
}
UP = {"sqlite": "DROP TRIGGER no_records", "postgresql": "DROP TRIGGER no_records ON mdm_records"}


async def test_the_mdm_store_down_parks_the_event_and_loses_nothing(hub_on: Hub) -> None:
    hub = hub_on
    dialect = hub.db.dialect

    def down(conn: Any) -> None:
        for statement in DOWN[dialect]:
            conn.exec_driver_sql(statement)

    await hub.db.run(down)
    await webhook(hub, SHOP_ANNA, "shop", "customers/create")

    async def parked() -> bool:
        return bool(
            await hub.db.run(
                lambda conn: conn.execute(select(func.count()).select_from(retries)).scalar_one()
            )
        )

    await until(parked)
    topic = hub.settings.canonical_topic("customer")
    assert await topic_records(hub.bootstrap, topic) == []
    await hub.db.run(lambda conn: conn.exec_driver_sql(UP[dialect]))
    [record] = await canonical(hub, 1)  # retried: mapped once master data answers
    assert record.key.decode() == derive("customer", "shop", "1001")
    assert await Crosswalk(hub.db).lookup("customer", "shop", "1001") == record.key.decode()


# -- the resolver on its own ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database_url(request.param, tmp_path) as url:
        made = Database(url)
        await made.start()
        try:
            yield made
        finally:
            await made.close()


def statements(db: Database) -> list[str]:
    """Every statement ``db`` sends from now on."""
    seen: list[str] = []
    engine = db._sync if db._sync is not None else db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    event.listen(engine, "begin", lambda *a: seen.append("<transaction>"))
    return seen


def customer(golden_id_of: Any, system: str, body: dict[str, Any]) -> dict[str, Any]:
    """A mapping's output: its id through the resolver, its attributes beside it."""
    return {
        "id": golden_id_of("customer", system, str(body["id"])),
        "external_refs": [{"system": system, "id": str(body["id"])}],
        **{k: v for k, v in body.items() if k not in ("id", "addresses")},
    }


async def test_a_batch_resolves_in_one_transaction_and_steady_state_reads_nothing(
    db: Database,
) -> None:
    service = MdmService(db, CONFIG)
    resolver = MdmResolver(Crosswalk(db), service)
    people = [("shop", SHOP_ANNA), ("crm", CRM_ANNA), ("shop", OTTO)]

    def batch() -> list[dict[str, Any]]:
        outputs = []
        for system, body in people:
            out = customer(resolver.golden_id, system, body)
            outputs.append(resolver.complete("customer", out))
        return outputs

    misses: set[Any] = set()
    resolver.collect(batch, misses)
    assert len(misses) == 3  # none cached: each record's ref, with its attributes
    sent = statements(db)
    changed = await resolver.load(misses)
    assert changed == misses
    assert sent.count("<transaction>") == 1  # the whole batch: one transaction
    if db.dialect == "postgresql":  # a fixed number of statements, not one set per record
        assert len(sent) <= 16, sent  # (SQLite, local, reads a block per key)
    outputs = resolver.collect(batch, misses := set())
    assert misses == set()  # all cached now, attributes as stored: nothing to read
    anna = derive("customer", "shop", "1001")
    assert [o["id"] for o in outputs] == [anna, anna, derive("customer", "shop", "1002")]
    assert outputs[1]["external_refs"] == [
        {"system": "crm", "id": "c-9"},
        {"system": "shop", "id": "1001"},
    ]
    sent.clear()
    assert resolver.collect(batch, set()) == outputs and sent == []  # steady state: no database

    # changed attributes: sent with the next batch, the golden record's fields chosen again
    people[0] = ("shop", {**SHOP_ANNA, "first_name": "Anne"})
    resolver.collect(batch, misses := set())
    assert misses == {(False, "customer", "shop", "1001")}
    await resolver.load(misses)
    fields = await db.run(
        lambda conn: conn.execute(
            select(mdm_golden.c.fields).where(mdm_golden.c.golden_id == anna)
        ).scalar_one()
    )
    assert fields["first_name"]["value"] in ("Anne", "ANNA")
    assert (
        await db.run(
            lambda conn: conn.execute(
                select(func.count())
                .select_from(mdm_golden)
                .where(mdm_golden.c.entity == "customer", mdm_golden.c.status == "active")
            ).scalar_one()
        )
        == 2
    )


async def test_an_id_alone_is_looked_up_never_created(db: Database) -> None:
    service = MdmService(db, CONFIG)
    resolver = MdmResolver(Crosswalk(db), service)
    order = {"id": "o-1", "customer": {"id": None, "external_refs": []}}

    def map_order() -> dict[str, Any]:
        out = {**order, "customer": {"id": resolver.golden_id("customer", "shop", "1001")}}
        return resolver.complete("order", out)

    out = await resolve_ahead(resolver, map_order)
    assert out["customer"]["id"] == derive("customer", "shop", "1001")
    assert await Crosswalk(db).lookup("customer", "shop", "1001") is None
    # an order that embeds the customer's e-mail and name: matched, and stored
    await service.resolve("customer", "crm", "c-9", match_attributes(CRM_ANNA))

    def map_order_with_customer() -> dict[str, Any]:
        ref = {
            "id": resolver.golden_id("customer", "shop", "1002"),
            "email": "anna.mueller@example.com",
            "first_name": "Anna",
            "last_name": "Müller",
        }
        return resolver.complete("order", {**order, "customer": ref})

    out = await resolve_ahead(resolver, map_order_with_customer)
    assert out["customer"]["id"] == derive("customer", "crm", "c-9")
    assert await Crosswalk(db).lookup("customer", "shop", "1002") == derive(
        "customer", "crm", "c-9"
    )


async def test_master_data_unreadable_raises_master_data_unavailable(tmp_path: Path) -> None:
    async with database_url("sqlite", tmp_path) as url:
        db = Database(url)
        await db.start()
        service = MdmService(db, CONFIG)
        resolver = MdmResolver(Crosswalk(db), service)
        with sqlite3.connect(str(db._reader_path)) as conn:
            conn.execute("DROP TABLE mdm_records")
        misses: set[Any] = set()
        resolver.collect(
            lambda: resolver.complete("customer", customer(resolver.golden_id, "shop", SHOP_ANNA)),
            misses,
        )
        with pytest.raises(MasterDataUnavailable, match="master data cannot be read now"):
            await resolver.load(misses)
        with pytest.raises(MasterDataUnavailable):  # outside collecting: the miss raises
            resolver.golden_id("customer", "shop", "1001")
        await db.close()


def test_match_attributes_flattens_the_canonical_customer() -> None:
    assert match_attributes(
        {
            "id": "cus_1",
            "email": "a@example.com",
            "first_name": "Ann",
            "last_name": "",
            "addresses": [
                {"line1": "Main St 1", "line2": "Flat 2", "postal_code": "10115", "country": "DE"}
            ],
        }
    ) == {
        "email": "a@example.com",
        "first_name": "Ann",
        "street": "Main St 1 Flat 2",
        "postcode": "10115",
        "country": "DE",
    }


# -- HUB_MDM_CONFIG --------------------------------------------------------------------------


def test_hub_mdm_config_takes_the_place_of_hub_yaml_and_its_errors_have_file_and_line(
    tmp_path: Path,
) -> None:
    from hub.config import load_config
    from hub.errors import ConfigError

    hub_yaml = tmp_path / "hub.yaml"
    hub_yaml.write_text("mdm: missing.yaml\n")
    config = load_config(hub_yaml, mdm=ROOT / "examples" / "mdm.yaml")  # hub.yaml's is unused
    assert config.mdm is not None and "customer" in config.mdm.entities
    assert config.mdm_file == (ROOT / "examples" / "mdm.yaml").resolve()
    broken = tmp_path / "mdm.yaml"
    broken.write_text("entities:\n  customer:\n    fields:\n      email: nonsense\n")
    with pytest.raises(ConfigError) as caught:
        load_config(hub_yaml, mdm=broken)
    assert f"{broken}:4" in str(caught.value)
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read"):
        load_config(hub_yaml, mdm=tmp_path / "nowhere.yaml")


async def test_hub_mdm_config_is_reloaded_when_it_changes_and_a_broken_one_is_refused(
    hubs: HubFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mdm_yaml = tmp_path / "mdm.yaml"
    good = (ROOT / "examples" / "mdm.yaml").read_text()
    mdm_yaml.write_text(good)
    config = f"mappings: {ROOT / 'mappings'}\nconnections: {{}}\nroutes: []\n"
    hub = await hubs.start(
        config=config, mdm_config=mdm_yaml, reload_interval_s=0.1, roles=frozenset({"ingress"})
    )
    first = hub.mdm.config
    assert first is not None and first.entities["customer"].upper == 0.99

    mdm_yaml.write_text(good.replace("email: email ", "email: nonsense "))

    async def refused() -> bool:
        return "configuration change refused" in caplog.text and f"{mdm_yaml}:" in caplog.text

    await until(refused)
    assert hub.mdm.config is first  # the previous configuration keeps running

    mdm_yaml.write_text(good.replace("upper: 0.99", "upper: 0.95"))

    async def reloaded() -> bool:
        config = hub.mdm.config
        return config is not None and config.entities["customer"].upper == 0.95

    await until(reloaded)


async def test_a_link_made_in_another_process_refreshes_the_refs_this_one_adds(
    db: Database,
) -> None:
    from hub.mdm_service import ChangeWatcher

    here = MdmResolver(Crosswalk(db), MdmService(db, CONFIG))
    there = MdmService(db, CONFIG)  # another process's service, on the same database
    watcher = ChangeWatcher(here.service, lambda _changes: here.forget(), on_link=here.forget_refs)
    await watcher.start()
    try:

        def shop_anna() -> dict[str, Any]:
            return here.complete("customer", customer(here.golden_id, "shop", SHOP_ANNA))

        first = await resolve_ahead(here, shop_anna)
        assert first["external_refs"] == [{"system": "shop", "id": "1001"}]
        await there.resolve("customer", "crm", "c-9", match_attributes(CRM_ANNA))  # linked there
        assert here.collect(shop_anna, set())["external_refs"] == first["external_refs"]  # cached
        await watcher.poll()  # what every hub process does each HUB_MDM_POLL_S
        again = await resolve_ahead(here, shop_anna)
        assert again["id"] == first["id"]
        assert again["external_refs"] == [
            {"system": "shop", "id": "1001"},
            {"system": "crm", "id": "c-9"},
        ]
    finally:
        await watcher.stop()


async def test_keys_and_order_across_a_merge_and_an_unmerge(hub_on: Hub) -> None:
    """docs/mdm.md, "Keys and order across a merge", through the mapper: the merge event is on
    both keys, after everything the merged id had and before the merged record's later events,
    which carry the survivor's id on its key; after an unmerge they are on their own key again."""
    hub = hub_on
    anna, otto = derive("customer", "shop", "1001"), derive("customer", "shop", "1002")
    await webhook(hub, SHOP_ANNA, "shop", "customers/create")
    await webhook(hub, OTTO, "shop", "customers/create")
    await canonical(hub, 2)
    topic = hub.settings.canonical_topic("customer")

    async def mapped(name: str) -> None:
        async def there() -> bool:
            return any(
                json.loads(r.value).get("first_name") == name
                for r in await topic_records(hub.bootstrap, topic)
            )

        await until(there)

    await hub.mdm.merge("customer", anna, otto, actor="steward:test")
    await webhook(hub, {**OTTO, "first_name": "Ottokar"}, "shop", "customers/create")
    await mapped("Ottokar")  # mapped while merged
    await hub.mdm.unmerge("customer", otto, actor="steward:test")
    await webhook(hub, {**OTTO, "first_name": "Otto-Karl"}, "shop", "customers/create")
    await mapped("Otto-Karl")

    def steps(records: list[Any]) -> dict[str, list[str]]:
        """Each key's events in the order its consumers read them: the change events, and the
        customers mapped from the shop by name (the golden records published for the systems
        to follow, origin mdm, left out)."""
        by_key: dict[str, list[str]] = {}
        for r in records:
            kind = header_value(r.headers, "ce_type") or ""
            if kind == "hub.customer":
                if header_value(r.headers, "ce_hubsystem") == "mdm":
                    continue
                body = json.loads(r.value)
                kind = f"{body['first_name']} as {body['id']}"
            by_key.setdefault(r.key.decode(), []).append(kind)
        return by_key

    assert steps(await topic_records(hub.bootstrap, topic)) == {
        anna: [
            f"Anna as {anna}",
            "hub.customer.merged",
            f"Ottokar as {anna}",  # the merged record's later event: the survivor's id and key
            "hub.customer.unmerged",
        ],
        otto: [
            f"Otto as {otto}",
            "hub.customer.merged",  # the merged id's history ends with "merged into anna"
            "hub.customer.unmerged",
            f"Otto-Karl as {otto}",  # unmerged: its own id and key again
        ],
    }
