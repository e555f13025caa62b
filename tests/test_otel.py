"""OpenTelemetry export (hub/telemetry.py): with HUB_OTEL_ENDPOINT a real OTLP/HTTP receiver
gets one trace per webhook, hub.ingress -> hub.map -> hub.deliver, in the incoming trace."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub import telemetry, tracing
from hub.errors import ConfigError
from hub.runtime import Hub

from .support.harness import (
    HubFactory,
    Received,
    RecordingSink,
    config_text,
    order_body,
    post,
    shopify_headers,
    until,
)
from .support.otlp import OtlpReceiver, ReceivedSpan

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP's SpanKind
ERROR = 2  # OTLP's StatusCode


async def exported(hub: Hub, otlp: OtlpReceiver, trace_id: str, count: int) -> list[ReceivedSpan]:
    """The spans of one trace once ``count`` have arrived (the hub flushed meanwhile)."""

    async def arrived() -> bool:
        assert hub.tracer is not None
        await asyncio.to_thread(hub.tracer.flush)
        return len(otlp.trace(trace_id)) >= count

    await until(arrived)
    return otlp.trace(trace_id)


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    names = [s.name for s in spans]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in spans}


async def test_one_trace_per_webhook_from_ingress_to_the_destination(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    with OtlpReceiver() as otlp:
        hub = await hubs.start(sink.url, otel_endpoint=otlp.url)
        traced, untraced = order_body(31), order_body(32)
        answer = await post(hub, traced, {**shopify_headers(traced), "traceparent": INCOMING})
        event_id = answer.json()["id"]
        await post(hub, untraced, shopify_headers(untraced))
        got = {item.body["number"]: item for item in [await sink.next(), await sink.next()]}

        trace_id = tracing.trace_id(INCOMING)
        spans = by_name(await exported(hub, otlp, trace_id, 3))
        assert set(spans) == {"hub.ingress", "hub.map", "hub.deliver"}
        ingress, mapped, deliver = spans["hub.ingress"], spans["hub.map"], spans["hub.deliver"]
        # a chain in the caller's trace: webhook request -> ingress -> map -> deliver
        assert ingress.parent_span_id == INCOMING.split("-")[2]
        assert mapped.parent_span_id == ingress.span_id
        assert deliver.parent_span_id == mapped.span_id
        assert (ingress.kind, mapped.kind, deliver.kind) == (SERVER, CONSUMER, CLIENT)
        assert ingress.attributes == {"hub.event_id": event_id, "hub.connection": "shop"}
        assert mapped.attributes["hub.route"] == "shop-orders-in"
        assert mapped.attributes["hub.event_id"] == event_id
        assert deliver.attributes["hub.route"] == "orders-to-erp"
        assert deliver.attributes["hub.destination"] == "erp"
        assert deliver.attributes["hub.connection"] == "shop"
        assert all(s.status_code != ERROR for s in spans.values())
        assert ingress.resource["service.name"] == "hub"
        # the destination's own spans hang below hub.deliver
        first = got["#31"].headers
        assert first["traceparent"] == f"00-{trace_id}-{deliver.span_id}-01"
        # no payload in any attribute (the order's customer e-mail, say)
        values = " ".join(str(v) for s in spans.values() for v in s.attributes.values())
        assert "@" not in values and "#31" not in values

        # the webhook without a traceparent: a trace of its own, rooted at hub.ingress
        second = tracing.trace_id(got["#32"].headers["traceparent"])
        assert second != trace_id
        own = by_name(await exported(hub, otlp, second, 3))
        assert own["hub.ingress"].parent_span_id == ""
        assert own["hub.deliver"].parent_span_id == own["hub.map"].span_id
        assert {s.trace_id for s in otlp.received()} == {trace_id, second}


async def test_a_refused_delivery_and_a_failed_mapping_mark_their_spans(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    def respond(item: Received) -> int:
        return 422  # refused: a dead letter

    sink.respond = respond
    with OtlpReceiver() as otlp:
        hub = await hubs.start(sink.url, otel_endpoint=otlp.url)
        body = order_body(41)
        await post(hub, body, {**shopify_headers(body), "traceparent": INCOMING})
        deliver = by_name(await exported(hub, otlp, tracing.trace_id(INCOMING), 3))["hub.deliver"]
        assert deliver.status_code == ERROR
        assert deliver.attributes["hub.error_class"] == "DeliveryRejected"

        broken = order_body(42, financial_status="on_hold")  # not in the mapping's lookup
        other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await post(hub, broken, {**shopify_headers(broken), "traceparent": other})
        mapped = by_name(await exported(hub, otlp, tracing.trace_id(other), 2))["hub.map"]
        assert mapped.status_code == ERROR
        assert mapped.attributes["hub.error_class"] == "MappingFailed"


async def test_hubs_in_one_process_export_apart_and_off_is_the_default(
    hubs: HubFactory, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    with OtlpReceiver() as one, OtlpReceiver() as two:
        with caplog.at_level(logging.INFO, logger="hub.runtime"):
            first = await hubs.start(sink.url, otel_endpoint=one.url)
        assert "exporting spans over OTLP/HTTP" in caplog.text
        assert one.url not in caplog.text  # a URL may hold credentials
        second = await hubs.start(sink.url, otel_endpoint=two.url)
        plain = await hubs.start(sink.url)
        assert plain.tracer is None
        for hub, number in ((first, 51), (second, 52), (plain, 53)):
            body = order_body(number)
            await post(hub, body, shopify_headers(body))
            traceparent = (await sink.next()).headers["traceparent"]
            if hub is plain:
                continue  # nothing exported; the destination still gets the trace context
            receiver = one if hub is first else two
            trace_id = tracing.trace_id(traceparent)
            assert len(await exported(hub, receiver, trace_id, 3)) == 3
        assert {s.trace_id for s in one.received()} & {s.trace_id for s in two.received()} == set()


async def test_spans_left_are_exported_when_the_hub_stops(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    with OtlpReceiver() as otlp:
        hub = await hubs.start(sink.url, otel_endpoint=otlp.url)
        body = order_body(61)
        await post(hub, body, {**shopify_headers(body), "traceparent": INCOMING})
        await sink.next()

        async def delivered() -> bool:
            value = "hub_events_delivered_total"
            return hub.metrics.value(value, route="orders-to-erp", destination="erp") == 1

        await until(delivered)
        await hub.stop()  # the batch processor's delay has not passed: stop exports them
        assert hub.tracer is None
        names = {s.name for s in otlp.trace(tracing.trace_id(INCOMING))}
        assert names == {"hub.ingress", "hub.map", "hub.deliver"}


def test_without_the_sdk_an_endpoint_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.settings import Settings

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    settings = Settings(state_dir=tmp_path, otel_endpoint="http://127.0.0.1:4318/v1/traces")
    with pytest.raises(ConfigError) as refused:
        telemetry.from_settings(settings, frozenset({"ingress"}))
    assert "pip install 'hub[otel]'" in str(refused.value)
    assert telemetry.from_settings(Settings(state_dir=tmp_path), frozenset()) is None


def test_hub_up_says_what_to_install(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(config_text(None))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {
        "HUB_OTEL_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
        "HUB_STATE_DIR": str(tmp_path / "state"),
        "HUB_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached: refused before
    }
    without_sdk = (
        "import sys; sys.modules['opentelemetry.sdk.trace'] = None; "
        "from hub.cli import main; raise SystemExit(main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", without_sdk, "up", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "HUB_OTEL_ENDPOINT" in result.stderr
    assert "pip install 'hub[otel]'" in result.stderr


def test_the_otel_extra_is_declared_and_installed_by_make() -> None:
    import tomllib

    from .support.harness import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {d.split(">")[0].split("=")[0] for d in extras["otel"]}
    assert names == {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}
    assert "'.[dev,bench,otel]'" in (ROOT / "Makefile").read_text()  # so `make test` runs these


async def test_each_polled_change_starts_a_trace_at_its_ingress_span(hubs: HubFactory) -> None:
    from .support.feed import FeedServer, feed_config
    from .support.harness import header, topic_records

    async with FeedServer(page_size=3) as feed:
        feed.add(3)
        with OtlpReceiver() as otlp:
            hub = await hubs.start(
                config=feed_config(feed.url), roles=frozenset({"ingress"}), otel_endpoint=otlp.url
            )

            async def stored() -> bool:
                return len(await topic_records(hub.bootstrap, hub.settings.ingest_topic)) == 3

            await until(stored)
            records = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
            carried = [header(r, "ce_traceparent") or "" for r in records]
            spans = [(await exported(hub, otlp, tracing.trace_id(t), 1))[0] for t in carried]
    assert len({s.trace_id for s in spans}) == 3  # one trace per change, not one per poll
    for span, traceparent, record in zip(spans, carried, records, strict=True):
        assert (span.name, span.kind, span.parent_span_id) == ("hub.ingress", CONSUMER, "")
        # sampled (01), and the SDK may set W3C level 2's random trace id flag (02) on a root
        assert traceparent.rsplit("-", 1)[0] == f"00-{span.trace_id}-{span.span_id}"
        assert int(traceparent[-2:], 16) & 1
        assert span.attributes == {
            "hub.event_id": header(record, "ce_id"),
            "hub.connection": "feed",
        }
