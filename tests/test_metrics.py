"""/metrics (hub/metrics.py): the counters, histograms and gauges follow what happens to real
events on the real broker and a real HTTP destination."""

from __future__ import annotations

import httpx

from hub.runtime import Hub

from .support.harness import (
    HubFactory,
    Received,
    RecordingSink,
    order_body,
    post,
    shopify_headers,
    until,
)


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value in Prometheus's text format, parsed as a scraper would."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def scrape(hub: Hub) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{hub.base_url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


async def test_counters_follow_delivered_parked_and_dead_lettered_events(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    # order 1 is delivered at once; order 2 fails once (503) then is delivered; order 3 is
    # refused (422) and becomes a dead letter
    calls: dict[int, int] = {}

    def respond(item: Received) -> int:
        number = int(item.body["number"].lstrip("#"))
        calls[number] = calls.get(number, 0) + 1
        if number == 3:
            return 422
        return 503 if number == 2 and calls[number] == 1 else 200

    sink.respond = respond
    hub = await hubs.start(sink.url)
    for number in (1, 2, 3):
        body = order_body(number)
        assert (await post(hub, body, shopify_headers(body))).status_code == 202

    async def settled() -> bool:
        m = hub.metrics
        return (
            m.value("hub_events_delivered_total", route="orders-to-erp", destination="erp") == 2
            and m.value(
                "hub_events_dead_lettered_total",
                stage="deliver",
                route="orders-to-erp",
                destination="erp",
                error_class="DeliveryRejected",
            )
            == 1
        )

    await until(settled)
    async with httpx.AsyncClient() as client:
        bad = order_body(4)
        forged = {**shopify_headers(bad), "x-shopify-hmac-sha256": "AAAA"}
        await client.post(f"{hub.base_url}/webhooks/shop", content=bad, headers=forged)
        await client.post(f"{hub.base_url}/webhooks/nobody-{hub.port}", content=b"{}")
    text = await scrape(hub)
    assert sample(text, "hub_webhooks_total", connection="shop", status="202") == 3
    assert sample(text, "hub_webhooks_total", connection="shop", status="401") == 1
    assert sample(text, "hub_webhooks_total", connection="(unknown)", status="404") == 1
    assert sample(text, "hub_webhook_seconds_count", connection="shop") == 4
    assert sample(text, "hub_events_ingested_total", connection="shop") == 3
    route = {"route": "orders-to-erp", "destination": "erp"}
    assert sample(text, "hub_events_mapped_total", route="shop-orders-in", entity="order") == 3
    assert sample(text, "hub_events_delivered_total", **route) == 2
    assert sample(text, "hub_events_parked_total", stage="deliver", **route) == 1
    failed = {"stage": "deliver", **route}
    assert sample(text, "hub_events_failed_total", error_class="DeliveryRetriable", **failed) == 1
    assert sample(text, "hub_events_failed_total", error_class="DeliveryRejected", **failed) == 1
    # every call to the destination was timed: 2 + 1 retry + 1 refusal
    assert sample(text, "hub_delivery_seconds_count", destination="erp") == 4
    assert sample(text, "hub_circuit_open", destination="erp") == 0


async def test_consumer_lag_is_exposed_per_group_and_partition(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    body = order_body(7)
    await post(hub, body, shopify_headers(body))
    await sink.next()

    async def lag_known() -> bool:
        text = await scrape(hub)
        group = hub.settings.delivery_group("erp")
        topic = hub.settings.canonical_topic("order")
        return sample(text, "hub_consumer_lag", group=group, topic=topic, partition="0") == 0

    await until(lag_known)


async def test_metrics_need_the_ops_token_when_one_is_set(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url, ops_token="metrics-token-0123456789")
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"{hub.base_url}/metrics")
        allowed = await client.get(
            f"{hub.base_url}/metrics",
            headers={"authorization": "Bearer metrics-token-0123456789"},
        )
    assert refused.status_code == 401
    assert allowed.status_code == 200 and "hub_events_mapped_total" in allowed.text
