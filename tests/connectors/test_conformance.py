"""Every registered connector passes the same conformance checks (connectors/conformance.py).

A connector registered without a setup here fails ``test_every_connector_has_a_setup``: a new
connector joins the suite by adding one."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import connectors
from connectors import CreatedId, Delivery, DeliveryResult, Sink, WebhookSource
from connectors.conformance import (
    check_problems,
    example_options,
    forgery_problems,
    idempotency_problems,
    result_problems,
    spec_problems,
)
from connectors.shopify import sign
from tests.support.threaded import serve

SECRET = "conformance-secret-0123456789"
SECRET_REF = "env:HUB_CONFORMANCE_SECRET"


@dataclass
class Destination:
    """An HTTP destination that honours Idempotency-Key, as a well-behaved API does."""

    base: str = ""
    effects: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key -> (ce-id, body)


@pytest.fixture(scope="module")
def destination() -> Iterator[Destination]:
    dest = Destination()

    async def receive(request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key", "")
        if request.method == "HEAD":
            return JSONResponse({"ok": True})
        if key not in dest.effects:
            dest.effects[key] = (request.headers.get("ce-id", ""), json.loads(await request.body()))
        # the same id again for a redelivered request, as an API honouring the key answers
        return JSONResponse({"ok": True, "id": f"ext-{list(dest.effects).index(key)}"}, 201)

    async def locked(_request: Request) -> JSONResponse:
        return JSONResponse({"error": "unauthorized"}, 401)

    app = Starlette(
        routes=[
            Route("/orders", receive, methods=["POST", "PUT", "HEAD"]),
            Route("/locked", locked, methods=["HEAD", "POST"]),
        ]
    )
    with serve(app, lifespan="off") as base:
        dest.base = base
        yield dest


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


# Per connector: working options, options whose check must fail (None: nothing to reach), and
# for sinks how to count an event's effects in the destination.
def setup_http(dest: Destination, tmp: Path) -> dict[str, Any]:
    return {
        "options": {"url": f"{dest.base}/orders", "authorization": SECRET_REF, "result_id": "/id"},
        "failing": [
            {"url": f"http://127.0.0.1:{closed_port()}/orders", "authorization": SECRET_REF},
            {"url": f"{dest.base}/locked", "authorization": SECRET_REF},
        ],
        "effects": lambda event_id: sum(e == event_id for e, _ in dest.effects.values()),
    }


def setup_file(_dest: Destination, tmp: Path) -> dict[str, Any]:
    target = tmp / "out" / "events.jsonl"
    (tmp / "a-file").write_text("")

    def effects(event_id: str) -> int:
        lines = target.read_text(encoding="utf-8").splitlines()
        return sum(json.loads(line)["id"] == event_id for line in lines)

    return {
        "options": {"path": str(target)},
        "failing": [{"path": str(tmp / "a-file" / "events.jsonl")}],
        "effects": effects,
    }


def setup_shopify(_dest: Destination, _tmp: Path) -> dict[str, Any]:
    body = b'{"id": 820982911946154508}'
    headers = {
        "x-shopify-hmac-sha256": sign(SECRET, body),
        "x-shopify-topic": "orders/create",
        "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    }
    return {"options": {"webhook_secret": SECRET_REF}, "failing": None, "signed": (body, headers)}


SETUPS = {"http": setup_http, "file": setup_file, "shopify": setup_shopify}
# Connectors whose behaviour can only be checked against their real system run the same
# conformance functions in their own tests (marked as such); their spec is checked here too.
ELSEWHERE = {
    "tryton": "tests/tryton/test_sink.py",
    "shopify_admin": "tests/connectors/test_shopify_admin.py",
    "bottlecrm": "tests/bottlecrm/test_connector.py",
}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_CONFORMANCE_SECRET", SECRET)


def build(name: str, options: dict[str, Any]) -> Any:
    cls = connectors.get(name)
    assert cls is not None
    return cls(f"conformance-{name}", cls.Options.model_validate(options))


def shipped() -> set[str]:
    """The registered connectors, less the stand-ins the tests themselves register."""
    return {n for n in connectors.names() if not connectors.get(n).__module__.startswith("tests.")}  # type: ignore[union-attr]


def test_every_connector_has_a_setup() -> None:
    assert shipped() == set(SETUPS) | set(ELSEWHERE), "add a conformance setup for new connectors"


@pytest.mark.parametrize("name", sorted(set(SETUPS) | set(ELSEWHERE)))
def test_options_spec_is_complete_and_secrets_are_references(name: str) -> None:
    cls = connectors.get(name)
    assert cls is not None
    assert spec_problems(cls) == []
    # the spec's own examples make a valid configuration
    cls.Options.model_validate(example_options(cls, SECRET_REF))


@pytest.mark.parametrize("name", sorted(SETUPS))
async def test_behaviour(name: str, destination: Destination, tmp_path: Path) -> None:
    destination.effects.clear()  # the server is the module's; each run counts its own
    setup = SETUPS[name](destination, tmp_path)
    connector = build(name, setup["options"])
    problems: list[str] = []
    if isinstance(connector, WebhookSource):
        problems += await forgery_problems(connector, *setup["signed"])
    if isinstance(connector, Sink):
        delivery = Delivery(
            event_id=f"evt-{name}",
            event_type="hub.order.upserted",
            subject="ord_1",
            correlation_id="corr-1",
            headers={"id": f"evt-{name}"},
            data={"id": "ord_1"},
            route="orders-out",
        )

        async def effects() -> int:
            return int(setup["effects"](delivery.event_id))

        problems += await idempotency_problems(connector, delivery, effects)
    assert await build(name, setup["options"]).check_connection()  # what it checked
    for failing in setup["failing"] or []:
        problems += await check_problems(build(name, failing), [SECRET])
    assert problems == []


def test_results_of_the_wrong_shape_are_reported() -> None:
    """A sink may report what it created; the suite refuses results the hub cannot link."""
    assert result_problems(None) == []
    assert result_problems(DeliveryResult((CreatedId("order", "42", "v1"),))) == []
    assert result_problems({"id": "42"}) == ["deliver returned dict, not a DeliveryResult or None"]
    bad = DeliveryResult((CreatedId("order", 42),))  # type: ignore[arg-type]
    assert result_problems(bad) == [f"a created id is not non-empty text: {bad.created[0]!r}"]
    assert len(result_problems(DeliveryResult((CreatedId("", "1"), ("order", "1"))))) == 2  # type: ignore[arg-type]


def test_a_forged_request_accepted_is_reported() -> None:
    """The suite itself can fail: a source that accepts anything is caught."""

    class Gullible(WebhookSource):
        name = "gullible"
        title = "Accepts anything"
        description = "A broken source."

        def verify(self, headers: Any, body: bytes) -> None:
            return None

    import asyncio

    from connectors.base import ConnectorOptions

    problems = asyncio.run(
        forgery_problems(Gullible("g", ConnectorOptions()), b"{}", {"x-sig": "abc="})
    )
    assert len(problems) == 3


async def test_a_sink_idempotent_per_event_instead_of_per_route_is_reported() -> None:
    """The suite itself can fail: a sink that keys on the event id drops the second route's
    delivery; one that keys on nothing repeats an event."""
    from connectors.base import ConnectorOptions

    class Memory(Sink):
        name = "memory"
        title = "Memory"
        description = "Keeps what it is given."

        def __init__(self, key: Any) -> None:
            super().__init__("m", ConnectorOptions())
            self.key = key
            self.kept: dict[Any, Delivery] = {}

        async def deliver(self, delivery: Delivery) -> None:
            self.kept.setdefault(self.key(delivery), delivery)

    async def check(sink: Memory) -> list[str]:
        delivery = Delivery("e1", "hub.order", None, "c1", {}, data={}, route="r")

        async def effects() -> int:
            return len(sink.kept)

        return await idempotency_problems(sink, delivery, effects)

    assert await check(Memory(lambda d: d.idempotency_key)) == []
    assert await check(Memory(lambda d: d.event_id)) == [
        "an event delivered through two routes had 1 effects, not 2 (one per route)"
    ]
    assert await check(Memory(lambda d: object())) == [
        "an event delivered twice through one route had 2 effects, not 1",
        "an event delivered through two routes had 4 effects, not 2 (one per route)",
    ]


def test_an_undescribed_option_and_an_inline_secret_are_reported() -> None:
    from pydantic import Field

    from connectors.base import ConnectorOptions

    class Options(ConnectorOptions):
        url: str
        api_token: str = Field("", description="A token written inline.")

    class Careless(Sink):
        name = "careless"
        title = "Careless"
        description = "A broken sink."

    Careless.Options = Options
    assert spec_problems(Careless) == [
        "option url: no description",
        "option url: required but has no example",
        "option api_token: looks like a secret but is not a Secret reference",
    ]


def test_third_party_connectors_are_found_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package declares its connector in the hub.connectors entry-point group; a
    package that fails to load is reported, and the others keep working."""
    import sys

    from connectors import registry
    from hub.config import load_config
    from hub.errors import ConfigError

    (tmp_path / "acme_hub.py").write_text(
        "from connectors import Sink, register\n"
        "class AcmeErp(Sink):\n"
        "    name = 'acme-erp'\n"
        "    title = 'Acme ERP'\n"
        "    description = 'A third-party sink.'\n"
    )
    dist = tmp_path / "acme_hub-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hub\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hub.connectors]\nacme-erp = acme_hub:AcmeErp\nbroken = acme_missing:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.reload()
        cls = connectors.get("acme-erp")
        assert cls is not None and cls.title == "Acme ERP"
        assert "acme-erp" in connectors.names()
        assert "ModuleNotFoundError" in connectors.problems()["broken"]
        (tmp_path / "hub.yaml").write_text("connections:\n  x:\n    connector: broken\n")
        with pytest.raises(ConfigError, match="'broken' is installed but failed to load"):
            load_config(tmp_path / "hub.yaml")
    finally:
        registry._REGISTRY.pop("acme-erp", None)
        sys.modules.pop("acme_hub", None)
        monkeypatch.undo()
        registry.reload()
    assert connectors.get("acme-erp") is None
