"""Log lines carry what they are about as fields (hub/logs.py): event id, correlation id,
connection, route and destination, in JSON logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from hub.logs import ContextFilter, JsonFormatter, log_context

from .support.harness import HubFactory, RecordingSink, order_body, post, shopify_headers


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_fields_come_from_the_context_and_from_extra(json_lines: io.StringIO) -> None:
    log = logging.getLogger("hub.test")
    with log_context(event_id="evt-1", correlation_id="corr-1", route=None):
        log.info("inside")
        with log_context(destination="erp"):
            log.info("nested")
    log.info("outside", extra={"event_id": "evt-2"})
    inside, nested, outside = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert (inside["event_id"], inside["correlation_id"]) == ("evt-1", "corr-1")
    assert "route" not in inside and "destination" not in inside
    assert nested["destination"] == "erp" and nested["event_id"] == "evt-1"
    assert outside["event_id"] == "evt-2" and "correlation_id" not in outside


async def test_a_failed_delivery_logs_its_event_route_and_destination(
    hubs: HubFactory, sink: RecordingSink, json_lines: io.StringIO
) -> None:
    sink.status_script = [503]
    hub = await hubs.start(sink.url)
    body = order_body(11)
    answer = await post(hub, body, shopify_headers(body))
    raw_id = answer.json()["id"]
    delivered = await sink.next()
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [failed] = [line for line in lines if "failed (" in line["message"]]
    assert failed["event_id"] == delivered.headers["ce-id"]
    assert failed["correlation_id"] == raw_id
    assert failed["destination"] == "erp"
    assert failed["route"] == "orders-to-erp"
    assert failed["connection"] == "shop"
