"""W3C trace context (hub/tracing.py): taken from the webhook, carried through Kafka, sent on to
the destination in the same trace."""

from __future__ import annotations

import pytest

from hub import tracing

from .support.harness import (
    HubFactory,
    RecordingSink,
    header,
    order_body,
    post,
    shopify_headers,
    topic_records,
)

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # unknown version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: 1",
    ],
)
def test_an_invalid_incoming_traceparent_starts_a_new_trace(value: str | None) -> None:
    started = tracing.start(value)
    assert tracing.valid(started)
    assert tracing.trace_id(started) != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_valid_one_is_kept_and_a_child_keeps_its_trace() -> None:
    assert tracing.start(INCOMING.upper()) == INCOMING
    child = tracing.child(INCOMING)
    assert tracing.valid(child)
    assert tracing.trace_id(child) == tracing.trace_id(INCOMING)
    assert child != INCOMING and child.endswith("-01")


async def test_the_webhooks_trace_reaches_kafka_and_the_destination(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url)
    traced, untraced = order_body(21), order_body(22)
    await post(hub, traced, {**shopify_headers(traced), "traceparent": INCOMING})
    await post(hub, untraced, shopify_headers(untraced))
    got = {item.body["number"]: item for item in [await sink.next(), await sink.next()]}

    first = got["#21"].headers
    assert first["ce-traceparent"] == INCOMING  # the event's own context attribute
    assert tracing.trace_id(first["traceparent"]) == tracing.trace_id(INCOMING)
    assert first["traceparent"] != INCOMING  # a span of the hub's as the caller

    second = got["#22"].headers
    assert tracing.valid(second["ce-traceparent"])  # a trace of its own
    assert tracing.trace_id(second["traceparent"]) == tracing.trace_id(second["ce-traceparent"])
    assert tracing.trace_id(second["ce-traceparent"]) != tracing.trace_id(INCOMING)

    raw = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
    canonical = await topic_records(hub.bootstrap, hub.settings.canonical_topic("order"))
    assert INCOMING in {header(r, "ce_traceparent") for r in raw}
    assert INCOMING in {header(r, "ce_traceparent") for r in canonical}
