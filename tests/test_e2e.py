"""End to end on real components: signed webhook -> Tansu -> mapper -> delivery -> HTTP server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from connectors import idempotency_key_for
from hub.broker import EmbeddedBroker
from hub.envelope import derived_id

from .support.harness import (
    ORDER_BODY,
    ROOT,
    Cluster,
    HubFactory,
    RecordingSink,
    header,
    order_body,
    post,
    shopify_headers,
    topic_records,
    until,
)


async def test_signed_shopify_order_reaches_destination(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url, kafka_partitions=3)

    response = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, webhook_id="wh-e2e-1"))
    assert response.status_code == 202, response.text
    ingest_id = response.json()["id"]
    assert ingest_id == derived_id("webhook", "shop", "wh-e2e-1")

    got = await sink.next()
    order = got.body
    assert order["number"] == "#9999"
    assert order["status"] == "paid"
    assert order["currency"] == "USD"
    assert order["total"] == "418.00"
    assert order["created_at"] == "2022-01-01T00:00:00Z"
    assert order["external_refs"] == [{"system": "shopify", "id": "820982911946154508"}]
    assert [line["sku"] for line in order["lines"]] == [
        "IPOD2008PINK",
        "IPOD2008PINK",
        "IPOD2009BLACK",
    ]
    assert [line["total"] for line in order["lines"]] == ["199.00", "199.00", "0.00"]
    assert order["customer"]["email"] == "john@example.com"
    assert order["shipping_address"]["country"] == "US"

    # One idempotency key per canonical event and route; correlation leads back to the webhook.
    assert got.headers["idempotency-key"] == idempotency_key_for(
        got.headers["ce-id"], "orders-to-erp"
    )
    assert got.headers["ce-correlationid"] == ingest_id
    assert got.headers["ce-subject"] == order["id"]
    assert got.headers["ce-hubmapping"] == "shopify/orders_create"

    # The canonical topic is keyed by the golden id.
    canonical = await topic_records(hub.bootstrap, hub.settings.canonical_topic("order"))
    assert [r.key.decode() for r in canonical] == [order["id"]]
    assert json.loads(canonical[0].value) == order


async def test_duplicate_webhook_delivery_gives_one_event(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    body = order_body(1001)
    headers = shopify_headers(body, webhook_id="wh-dup")

    first = await post(hub, body, headers)
    second = await post(hub, body, headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "id": first.json()["id"]}

    # A later, different order is the marker: with one partition everything before it
    # has been mapped and delivered by the time it arrives.
    marker = order_body(1002)
    assert (await post(hub, marker, shopify_headers(marker))).status_code == 202
    numbers = [(await sink.next()).body["number"], (await sink.next()).body["number"]]
    assert numbers == ["#1001", "#1002"]
    assert [r.body["number"] for r in sink.received] == ["#1001", "#1002"]

    ingest = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
    assert len(ingest) == 2


async def test_transient_destination_failures_are_retried_with_the_same_key(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    sink.status_script = [503, 503]
    hub = await hubs.start(sink.url)
    body = order_body(2001)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202

    got = await sink.next()
    assert got.body["number"] == "#2001"
    assert len(sink.attempts) == 3
    assert {a.headers["idempotency-key"] for a in sink.attempts} == {got.headers["idempotency-key"]}


async def test_unmappable_order_becomes_a_dead_letter_and_others_flow(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    bad = order_body(3001, financial_status="on_hold")  # not in the mapping's lookup table
    good = order_body(3002)
    assert (await post(hub, bad, shopify_headers(bad, webhook_id="wh-bad"))).status_code == 202
    assert (await post(hub, good, shopify_headers(good))).status_code == 202

    assert (await sink.next()).body["number"] == "#3002"
    assert [r.body["number"] for r in sink.received] == ["#3002"]

    letters = await topic_records(hub.bootstrap, hub.settings.deadletter_topic)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.value == bad  # the original record, whole
    assert header(letter, "ce_id") == derived_id("webhook", "shop", "wh-bad")
    assert header(letter, "hub_dlq_stage") == "map"
    assert header(letter, "hub_dlq_error_class") == "MappingFailed"
    assert "field status" in (header(letter, "hub_dlq_error") or "")
    assert header(letter, "hub_dlq_mapping") == "shopify/orders_create"
    assert header(letter, "hub_dlq_mapping_version")


async def test_refused_delivery_becomes_a_dead_letter(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    sink.status_script = [422]
    hub = await hubs.start(sink.url)
    body = order_body(4001)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202
    marker = order_body(4002)
    assert (await post(hub, marker, shopify_headers(marker))).status_code == 202

    assert (await sink.next()).body["number"] == "#4002"
    assert len(sink.attempts) == 2  # a 422 is not retried
    letters = await topic_records(hub.bootstrap, hub.settings.deadletter_topic)
    assert [header(r, "hub_dlq_stage") for r in letters] == ["deliver"]
    assert header(letters[0], "hub_dlq_error_class") == "DeliveryRejected"
    assert header(letters[0], "hub_dlq_destination") == "erp"
    assert json.loads(letters[0].value)["number"] == "#4001"


async def test_ingress_mapper_and_delivery_can_run_in_separate_hubs(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    """`hub up --role ingress|mapper|delivery`: three processes' worth of hub on one broker and
    one database, each doing only its part."""
    from hub.workers.delivery import DeliveryWorker
    from hub.workers.mapper import MapperWorker

    delivery = await hubs.start(sink.url, roles=frozenset({"delivery"}))
    settings = delivery.settings
    mapper = await hubs.start(sink.url, roles=frozenset({"mapper"}), settings=settings)
    ingress = await hubs.start(sink.url, roles=frozenset({"ingress"}), settings=settings)

    assert {type(w) for w in delivery.workers} == {DeliveryWorker}
    assert MapperWorker in {type(w) for w in mapper.workers}
    assert DeliveryWorker not in {type(w) for w in mapper.workers}
    assert ingress.workers == []

    response = await post(ingress, ORDER_BODY, shopify_headers(ORDER_BODY, webhook_id="roles-1"))
    assert response.status_code == 202, response.text
    got = await sink.next()
    assert got.headers["ce-correlationid"] == response.json()["id"]
    assert got.body["number"] == "#9999"


async def test_a_canonical_event_twice_in_one_batch_is_delivered_once(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    """After a crash the mapper publishes again what it had published: the copy can land in
    the same delivery batch as the original, where the "already delivered" check made before
    the batch cannot see it."""
    from hub.bus import Publisher, ensure_topics
    from hub.envelope import CloudEvent

    settings = hubs.settings()
    await ensure_topics(settings, hubs.bootstrap, settings.all_topics())

    def canonical(event_id: str, golden: str) -> CloudEvent:
        return CloudEvent(
            id=event_id,
            source="/mappings/shopify/orders_create",
            type="hub.order",
            data=json.dumps({"id": golden}).encode(),
            subject=golden,
            key=golden,
        )

    # One key, so one after the other: when c-2 arrives, the copy of c-1 has been handled.
    events = [canonical("c-1", "ord_a"), canonical("c-1", "ord_a"), canonical("c-2", "ord_a")]
    publisher = Publisher(settings, hubs.bootstrap, 10.0)
    try:  # all three are waiting before the delivery worker starts: one batch
        await publisher.wait([publisher.send(settings.canonical_topic("order"), e) for e in events])
    finally:
        await publisher.close()

    await hubs.start(sink.url, settings=settings)
    ids: list[str] = []
    while "c-2" not in ids:
        ids.append((await sink.next()).headers["ce-id"])
    assert ids == ["c-1", "c-2"]


def test_the_suite_runs_on_the_cluster_it_is_given(broker: Cluster) -> None:
    """HUB_TEST_KAFKA_BOOTSTRAP_SERVERS points the suite at an external Kafka cluster."""
    external = os.environ.get("HUB_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        assert broker.bootstrap_servers == external
        assert not isinstance(broker, EmbeddedBroker)
    else:
        assert isinstance(broker, EmbeddedBroker) and broker.running


async def test_the_origin_travels_to_canonical_events_and_a_route_skips_its_own_system(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path
) -> None:
    """The raw event names its connection and system (ce_hubconnection, ce_hubsystem); every
    canonical event derived from it keeps them; routes see them as meta.origin/meta.system, and
    one with skip_origin does not send an event back to the system it came from."""
    from hub.bus import Publisher
    from hub.envelope import from_kafka

    config = f"""
mappings: {ROOT / "mappings"}
connections:
  shop:
    connector: shopify
    system: acme-shop
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  erp:
    connector: http
    options: {{url: "{sink.url}"}}
  shop-admin:                      # writes back to the shop: the same system
    connector: http
    system: acme-shop
    options: {{url: "{sink.url}"}}
  outbox:                          # writes each delivery's origin
    connector: file
    options: {{path: "{tmp_path / "outbox.jsonl"}"}}
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: orders-to-erp
    from: canonical.order
    to: erp
    when: "meta.origin == 'shop' and meta.system == 'acme-shop'"
  - name: orders-to-shop
    from: canonical.order
    to: shop-admin
    skip_origin: true
  - name: orders-to-outbox
    from: canonical.order
    to: outbox
"""
    hub = await hubs.start(config=config)
    body = order_body(4100)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202
    to_erp = await sink.next()
    event_id = to_erp.headers["ce-id"]
    assert to_erp.headers["idempotency-key"] == idempotency_key_for(event_id, "orders-to-erp")
    assert (to_erp.headers["ce-hubconnection"], to_erp.headers["ce-hubsystem"]) == (
        "shop",
        "acme-shop",
    )

    (raw,) = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
    (canonical,) = await topic_records(hub.bootstrap, hub.settings.canonical_topic("order"))
    for record in (raw, canonical):
        assert (header(record, "ce_hubconnection"), header(record, "ce_hubsystem")) == (
            "shop",
            "acme-shop",
        )

    # The same order from another system, keyed alike (one partition: after the first one):
    # the shop gets this one, and so never got the first, which came from it.
    event = from_kafka(canonical.key, canonical.value, canonical.headers)
    other = event.derive(
        id="from-the-pos",
        source=event.source,
        type=event.type,
        data=event.data,
        extensions={**event.extensions, "hubconnection": "pos", "hubsystem": "till"},
    )
    publisher = Publisher(hub.settings, hub.bootstrap, 10.0)
    try:
        await publisher.wait([publisher.send(hub.settings.canonical_topic("order"), other)])
    finally:
        await publisher.close()
    to_shop = await sink.next()
    assert to_shop.headers["idempotency-key"] == idempotency_key_for(
        "from-the-pos", "orders-to-shop"
    )
    assert [a.headers["ce-id"] for a in sink.attempts] == [event_id, "from-the-pos"]

    # Sinks are given the origin (Delivery.origin, Delivery.origin_system): the file writes it.
    async def both_written() -> bool:
        outbox = tmp_path / "outbox.jsonl"
        return outbox.exists() and len(outbox.read_text().splitlines()) == 2

    await until(both_written)
    lines = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [(r["id"], r["origin"], r["origin_system"]) for r in lines] == [
        (event_id, "shop", "acme-shop"),
        ("from-the-pos", "pos", "till"),
    ]
