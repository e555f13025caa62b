"""A hub running one of the CRM <-> ERP examples (examples/crm-erp.yaml, crm-deals.yaml) between
this session's real BottleCRM and real Tryton."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from hub.runtime import Hub
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import HubFactory
from tests.support.tryton import TrytonServer
from tests.support.tryton import setup as tryton_setup

ROOT = Path(__file__).resolve().parents[2]


def example(name: str, bottlecrm: BottleCrmServer, tryton: TrytonServer) -> str:
    """examples/<name>, pointed at this test's systems and polling Tryton often."""
    config = yaml.safe_load((ROOT / "examples" / name).read_text())
    config["mappings"] = str(ROOT / "mappings")
    config["connections"]["bottlecrm"]["options"]["url"] = bottlecrm.url
    erp = config["connections"]["tryton"]["options"]
    # settle_s: the hub writes a new party in several calls (party, then its e-mail and phone);
    # a poll that read it half-written would see a change of Tryton's (as it would any other
    # writer's) and send it on. The default is 5 s.
    erp.update(url=tryton.url, database=tryton.database, poll_interval_s=0.3, settle_s=1)
    return yaml.safe_dump(config)


@contextlib.asynccontextmanager
async def example_hub(
    name: str,
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    tryton: TrytonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    """The hub of examples/<name>, with BottleCRM's webhook pointed at it while it runs."""
    monkeypatch.setenv("BOTTLECRM_TOKEN", bottlecrm.token)
    monkeypatch.setenv("BOTTLECRM_WEBHOOK_SECRET", bottlecrm.webhook_secret)
    monkeypatch.setenv("TRYTON_PASSWORD", tryton_setup.HUB_PASSWORD)
    hub = await hubs.start(config=example(name, bottlecrm, tryton))
    bottlecrm.point_webhook(f"{hub.base_url}/webhooks/bottlecrm")
    try:
        yield hub
    finally:
        bottlecrm.point_webhook("http://127.0.0.1:9/hub-stopped", active=False)
