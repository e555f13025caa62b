"""Routing conditions, fan-out, disabled routes and hot reload, on the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors import idempotency_key_for

from .support.harness import (
    ROOT,
    HubFactory,
    RecordingSink,
    header,
    order_body,
    post,
    shopify_headers,
    topic_records,
)


def fan_out_config(eur_url: str, all_url: str, extra: str = "") -> str:
    return f"""
mappings: {ROOT / "mappings"}
connections:
  shop:
    connector: shopify
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  eu-erp:
    connector: http
    options: {{url: "{eur_url}"}}
  warehouse:
    connector: http
    options: {{url: "{all_url}"}}
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: eur-orders-to-eu-erp
    from: canonical.order
    to: eu-erp
    when: "currency == 'EUR'"
  - name: orders-to-warehouse
    from: canonical.order
    to: warehouse
{extra}"""


async def test_content_based_routing_and_fan_out(hubs: HubFactory) -> None:
    async with RecordingSink() as eu, RecordingSink() as wh:
        hub = await hubs.start(config=fan_out_config(eu.url, wh.url))
        usd, eur = order_body(5001), order_body(5002, currency="EUR")
        for body in (usd, eur):
            assert (await post(hub, body, shopify_headers(body))).status_code == 202

        assert {(await wh.next()).body["number"], (await wh.next()).body["number"]} == {
            "#5001",
            "#5002",
        }
        assert (await eu.next()).body["number"] == "#5002"
        # The USD order was before the EUR one in the only partition: it was skipped, not pending.
        assert [r.body["number"] for r in eu.received] == ["#5002"]


async def test_a_disabled_route_delivers_nothing(hubs: HubFactory) -> None:
    async with RecordingSink() as off, RecordingSink() as on:
        config = (
            fan_out_config(on.url, on.url)
            .replace(
                "  - name: orders-to-warehouse\n    from: canonical.order\n    to: warehouse\n",
                """  - name: orders-to-warehouse
    from: canonical.order
    to: warehouse
  - name: orders-to-archive
    from: canonical.order
    to: archive
    enabled: false
""",
            )
            .replace(
                "routes:",
                f'  archive:\n    connector: http\n    options: {{url: "{off.url}"}}\nroutes:',
            )
        )
        hub = await hubs.start(config=config)
        body = order_body(5101)
        assert (await post(hub, body, shopify_headers(body))).status_code == 202
        assert (await on.next()).body["number"] == "#5101"
        assert off.attempts == []
        assert "hub.deliver.archive" not in {w.group.split(".", 1)[1] for w in hub.workers}


async def test_enabling_a_route_whose_connection_has_no_secret_is_refused_until_it_has(
    hubs: HubFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The README's demo: `erp`'s route is off and ERP_AUTHORIZATION unset, and the hub starts.
    Turning the route on while the secret is missing is refused, naming the file, the line and
    the route, and the running version stays; once the secret is there, the same change is
    taken and `erp` gets the orders with it."""
    monkeypatch.delenv("TEST_RELOAD_ERP_AUTH", raising=False)
    async with RecordingSink() as erp, RecordingSink() as warehouse:
        off = (
            fan_out_config(erp.url, warehouse.url)
            .replace(
                f'options: {{url: "{erp.url}"}}',
                f'options: {{url: "{erp.url}", authorization: env:TEST_RELOAD_ERP_AUTH}}',
            )
            .replace("    when: \"currency == 'EUR'\"\n", "    enabled: false\n")
        )
        hub = await hubs.start(config=off, reload_interval_s=0.2)
        assert set(hub.config.idle) == {"eu-erp"}
        groups = {w.group for w in hub.workers}
        assert hub.settings.delivery_group("eu-erp") not in groups
        first = order_body(5201)
        assert (await post(hub, first, shopify_headers(first))).status_code == 202
        assert (await warehouse.next()).body["number"] == "#5201"

        hub.settings.config.write_text(off.replace("    enabled: false\n", ""))
        await _until(lambda: hub.last_reload["ok"] is False)
        (problem,) = hub.last_reload["problems"]  # type: ignore[misc]
        line = off.splitlines().index(
            f'    options: {{url: "{erp.url}", authorization: env:TEST_RELOAD_ERP_AUTH}}'
        )
        assert problem == (
            f"{hub.settings.config}:{line + 1} at connections.eu-erp.options.authorization: "
            "environment variable TEST_RELOAD_ERP_AUTH is not set (route 'eur-orders-to-eu-erp' "
            "needs it: set it, or disable that route)"
        )
        assert "configuration change refused, the previous version keeps running" in caplog.text
        assert set(hub.config.idle) == {"eu-erp"}
        assert hub.settings.delivery_group("eu-erp") not in {w.group for w in hub.workers}
        second = order_body(5202)
        assert (await post(hub, second, shopify_headers(second))).status_code == 202
        assert (await warehouse.next()).body["number"] == "#5202"

        monkeypatch.setenv("TEST_RELOAD_ERP_AUTH", "Bearer reload-erp-token")
        hub.settings.config.write_text(off.replace("    enabled: false\n", "") + "# set\n")
        await _until(lambda: hub.last_reload["ok"] is True and "eu-erp" in hub.config.connections)
        assert hub.settings.delivery_group("eu-erp") in {w.group for w in hub.workers}
        await hub.wait_ready()
        # a new destination's group starts at the oldest record: both orders reach it
        got = [await erp.next(), await erp.next()]
        assert sorted(r.body["number"] for r in got) == ["#5201", "#5202"]
        assert {r.headers["authorization"] for r in got} == {"Bearer reload-erp-token"}


async def test_hot_reload_swaps_a_changed_mapping_and_refuses_a_broken_one(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mappings = tmp_path / "mappings"
    (mappings / "shopify").mkdir(parents=True)
    for name in ("orders_create", "address", "customer_ref"):
        src = ROOT / "mappings" / "shopify" / f"{name}.yaml"
        (mappings / "shopify" / f"{name}.yaml").write_text(src.read_text())
    hub = await hubs.start(sink.url, mappings_dir=mappings, reload_interval_s=0.2)
    mapping_file = mappings / "shopify" / "orders_create.yaml"

    first = order_body(6001)
    assert (await post(hub, first, shopify_headers(first))).status_code == 202
    before = await sink.next()
    assert before.body["number"] == "#6001"

    # A broken edit is refused; the running version keeps working.
    good_text = mapping_file.read_text()
    mapping_file.write_text(good_text.replace("number: name", "number: nmae(name)"))
    await _until(
        lambda: hub.mappings.get("shopify/orders_create") is not None and _seen_fingerprint(hub)
    )
    await _until(lambda: "unknown function nmae()" in caplog.text)
    assert "configuration change refused, the previous version keeps running" in caplog.text
    assert "orders_create.yaml:" in caplog.text  # names the file and line
    second = order_body(6002)
    assert (await post(hub, second, shopify_headers(second))).status_code == 202
    assert (await sink.next()).headers["ce-hubmappingversion"] == before.headers[
        "ce-hubmappingversion"
    ]

    # A valid edit is compiled, checked and swapped in for new events.
    mapping_file.write_text(good_text.replace("number: name", "number: concat('SHOP-', name)"))
    old_version = before.headers["ce-hubmappingversion"]
    await _until(lambda: hub.mappings.get("shopify/orders_create").version != old_version)  # type: ignore[union-attr]
    third = order_body(6003)
    assert (await post(hub, third, shopify_headers(third))).status_code == 202
    after = await sink.next()
    assert after.body["number"] == "SHOP-#6003"
    assert (
        after.headers["ce-hubmappingversion"] == hub.mappings.get("shopify/orders_create").version
    )  # type: ignore[union-attr]
    assert after.headers["ce-hubmappingversion"] != old_version
    assert await topic_records(hub.bootstrap, hub.settings.deadletter_topic) == []


def _seen_fingerprint(hub) -> bool:  # type: ignore[no-untyped-def]
    return hub._fingerprint == hub._files_fingerprint()


async def _until(check, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 (polling state owned by the hub)
            await asyncio.sleep(0.05)


__all__ = ["header"]


async def test_an_outbound_route_applies_its_mapping(hubs: HubFactory, sink: RecordingSink) -> None:
    config = f"""
mappings: {ROOT / "mappings"}
connections:
  shop:
    connector: shopify
    options: {{webhook_secret: env:TEST_SHOPIFY_SECRET}}
  erp:
    connector: http
    options: {{url: "{sink.url}"}}
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: orders-to-erp
    from: canonical.order
    to: erp
    mapping: generic/order_to_erp
"""
    hub = await hubs.start(config=config)
    body = order_body(7001)
    assert (await post(hub, body, shopify_headers(body))).status_code == 202
    got = await sink.next()
    assert got.body["order_no"] == "#7001"
    assert got.body["order_date"] == "2022-01-01"
    assert [line["item"] for line in got.body["lines"]] == [
        "IPOD2008PINK",
        "IPOD2008PINK",
        "IPOD2009BLACK",
    ]
    assert got.headers["idempotency-key"] == idempotency_key_for(
        got.headers["ce-id"], "orders-to-erp"
    )
