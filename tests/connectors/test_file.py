"""The file sink: one JSON line per delivery, path relative to hub.yaml."""

from __future__ import annotations

import json
from pathlib import Path

from connectors import Delivery, idempotency_key_for
from connectors.file import File, FileOptions
from hub.config import load_config


def delivery(event_id: str, data: object, route: str = "to-file") -> Delivery:
    return Delivery(
        event_id=event_id,
        event_type="hub.order.upserted",
        subject="ord_1",
        correlation_id="corr-1",
        data=data,
        headers={"id": event_id},
        route=route,
        origin="shop",
        origin_system="shopify",
    )


async def test_appends_one_json_line_per_delivery(tmp_path: Path) -> None:
    target = tmp_path / "out" / "nested" / "orders.jsonl"
    sink = File("outbox", FileOptions.model_validate({"path": str(target)}))
    await sink.open()  # creates the folders
    await sink.deliver(delivery("evt-1", {"id": "ord_1", "total": "19.90", "name": "Grüße"}))
    await sink.deliver(delivery("evt-2", [1, None]))
    await sink.close()

    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first == {
        "id": "evt-1",
        "idempotency_key": idempotency_key_for("evt-1", "to-file"),
        "route": "to-file",
        "origin": "shop",
        "origin_system": "shopify",
        "type": "hub.order.upserted",
        "subject": "ord_1",
        "correlationid": "corr-1",
        "data": {"id": "ord_1", "total": "19.90", "name": "Grüße"},
    }
    assert second["id"] == "evt-2"
    assert second["data"] == [1, None]
    assert "Grüße" in lines[0]  # written as UTF-8, not \u-escaped


async def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "orders.jsonl"
    target.write_text('{"id": "old"}\n', encoding="utf-8")
    sink = File("outbox", FileOptions.model_validate({"path": str(target)}))
    await sink.open()
    await sink.deliver(delivery("evt-3", {}))
    ids = [json.loads(line)["id"] for line in target.read_text().splitlines()]
    assert ids == ["old", "evt-3"]


async def test_idempotent_per_event_and_route_across_reopening(tmp_path: Path) -> None:
    target = tmp_path / "orders.jsonl"
    target.write_text('{"id": "old"}\n', encoding="utf-8")  # written before keys were
    sink = File("outbox", FileOptions.model_validate({"path": str(target)}))
    await sink.deliver(delivery("evt-1", {}, route="a"))
    await sink.deliver(delivery("evt-1", {}, route="b"))  # another route: another line
    await sink.deliver(delivery("evt-1", {}, route="a"))  # the same again: none
    again = File("outbox", FileOptions.model_validate({"path": str(target)}))
    await again.deliver(delivery("evt-1", {}, route="b"))  # known after reopening too
    await again.deliver(delivery("old", {}, route="a"))  # a keyless line counts for every route
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["id"], r.get("route")) for r in lines] == [
        ("old", None),
        ("evt-1", "a"),
        ("evt-1", "b"),
    ]
    assert lines[1]["idempotency_key"] != lines[2]["idempotency_key"]


def test_relative_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    options = FileOptions.model_validate(
        {"path": "out/orders.jsonl"}, context={"base_dir": str(tmp_path)}
    )
    assert options.path == tmp_path / "out" / "orders.jsonl"
    absolute = FileOptions.model_validate(
        {"path": "/var/tmp/x.jsonl"}, context={"base_dir": str(tmp_path)}
    )
    assert absolute.path == Path("/var/tmp/x.jsonl")
    # without a base dir the path is kept as written
    assert FileOptions.model_validate({"path": "x.jsonl"}).path == Path("x.jsonl")


async def test_configured_in_hub_yaml_writes_next_to_it(tmp_path: Path) -> None:
    config_dir = tmp_path / "conf"
    config = load_config(
        config_dir / "hub.yaml",
        text="connections:\n  outbox: {connector: file, options: {path: ../outbox/o.jsonl}}\n",
    )
    sink = config.sinks()["outbox"]
    await sink.open()
    await sink.deliver(delivery("evt-9", {"n": 1}))
    written = (tmp_path / "outbox" / "o.jsonl").read_text()
    assert json.loads(written)["correlationid"] == "corr-1"
