"""The polling fallback against a real BottleCRM: contacts changed while the hub was down (its
webhooks lost) arrive once when the hub polls, and a page never skips or repeats a record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.bottlecrm import BottleCrm, BottleCrmOptions
from hub.mdm import DeterministicResolver
from tests.support.bottlecrm import BottleCrmServer
from tests.support.harness import HubFactory, until

ROOT = Path(__file__).resolve().parents[2]


def hub_yaml(bottlecrm: BottleCrmServer, outbox: Path) -> str:
    return f"""
mappings: {ROOT / "mappings"}
connections:
  bottlecrm:
    connector: bottlecrm
    options:
      url: {bottlecrm.url}
      token: env:HUB_TEST_BOTTLECRM_TOKEN
      webhook_secret: env:HUB_TEST_BOTTLECRM_WEBHOOK_SECRET
      poll: [contacts]
      poll_interval_s: 0.3
      settle_s: 0
  outbox:
    connector: file
    options: {{path: {outbox}}}
routes:
  - {{name: crm-contacts-updated, from: bottlecrm, mapping: bottlecrm/contact_updated}}
  - {{name: customers-to-outbox, from: canonical.customer, to: outbox}}
"""


def outbox(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line)["data"] for line in path.read_text().splitlines()]


def golden(contact_id: str) -> str:
    return DeterministicResolver().golden_id("customer", "bottlecrm", f"contact:{contact_id}")


async def test_contacts_changed_while_the_hub_was_down_arrive_once(
    hubs: HubFactory,
    bottlecrm: BottleCrmServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_TOKEN", bottlecrm.token)
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_WEBHOOK_SECRET", bottlecrm.webhook_secret)
    bottlecrm.point_webhook("http://127.0.0.1:9/hub-is-down")  # every webhook is lost
    made = []
    for i in range(3):
        made.append(
            bottlecrm.api(
                "POST",
                "contacts/",
                {"first_name": f"Down{i}", "last_name": "Time", "email": f"down{i}@example.com"},
            )
        )
    bottlecrm.api("PATCH", f"contacts/{made[0]['id']}/", {"phone": "+17575550111"})
    path = tmp_path / "outbox.jsonl"
    await hubs.start(config=hub_yaml(bottlecrm, path))

    wanted = {golden(c["id"]) for c in made}

    async def arrived() -> bool:
        return wanted <= {c["id"] for c in outbox(path)}

    await until(arrived)
    # a later change is polled after them: every poll before it has been through the hub
    late = await asyncio.to_thread(
        bottlecrm.api,
        "POST",
        "contacts/",
        {"first_name": "Late", "last_name": "Comer", "email": "late@example.com"},
    )

    async def late_arrived() -> bool:
        return golden(late["id"]) in {c["id"] for c in outbox(path)}

    await until(late_arrived)
    seen = [c["id"] for c in outbox(path) if c["id"] in wanted]
    assert sorted(seen) == sorted(wanted)  # each once, the edited one in its last state
    first = next(c for c in outbox(path) if c["id"] == golden(made[0]["id"]))
    assert first["phone"] == "+17575550111"


async def test_a_poll_pages_by_updated_at_and_id_and_leaves_what_has_not_settled(
    bottlecrm: BottleCrmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_TEST_BOTTLECRM_TOKEN", bottlecrm.token)
    options = {"url": bottlecrm.url, "token": "env:HUB_TEST_BOTTLECRM_TOKEN", "poll": ["contacts"]}
    settled = BottleCrm("bottlecrm", BottleCrmOptions(**options, settle_s=3600))
    paged = BottleCrm("bottlecrm", BottleCrmOptions(**options, settle_s=0, page_size=2))
    try:
        bottlecrm.api(
            "POST", "contacts/", {"first_name": "Page", "last_name": "One", "email": "p1@e.org"}
        )
        assert (await settled.poll(None)).changes == []  # all younger than an hour
        everything = [c["id"] for c in bottlecrm.api("GET", "contacts/?limit=100")["results"]]
        cursor, seen = None, []
        for _ in range(len(everything) + 2):
            page = await paged.poll(cursor)
            seen += [c.subject for c in page.changes]
            assert len(page.changes) <= 2
            if page.cursor is None:
                break
            cursor = page.cursor
        assert sorted(seen) == sorted(everything)  # none skipped, none twice
        assert (await paged.poll(cursor)).changes == []
    finally:
        await settled.close()
        await paged.close()
