"""Aliases (hub/aliases.py): ``hub mdm alias-legacy-ids`` keeps the golden ids mappings derived
from a connection's name (before ``meta.system``) resolving, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from hub.aliases import alias_legacy_ids
from hub.crosswalk import Crosswalk
from hub.db import Database
from hub.mdm import DeterministicResolver
from hub.mdm_service import MdmService

from .test_cli import REPO, hub
from .test_db import db  # noqa: F401
from .test_mdm_service import ANNA, CONFIG

derived = DeterministicResolver().golden_id


async def _resolves(service: MdmService, entity: str, golden_id: str) -> str | None:
    record = await service.golden(entity, golden_id)
    return None if record is None else record["resolves_to"]


async def test_ids_derived_from_a_connections_name_resolve_after_the_upgrade(
    db: Database,  # noqa: F811
) -> None:
    """``shop`` (system ``shopify``) and ``erp`` (system ``tryton``) gave ids derived from their
    names; objects now linked under their systems get those ids back as aliases, once."""
    await db.start()
    service = MdmService(db, CONFIG)
    xwalk = Crosswalk(db)
    order = derived("order", "shopify", "1001")
    await xwalk.link_many(
        [("order", "shopify", "1001", order), ("product", "shopify", "p-1", "prd_x")],
        linked_by="source",
        reason="in",
    )
    await xwalk.link("order", "tryton", "SO-1", order, linked_by="sink:erp")
    await xwalk.link("order", "bottlecrm", "d-1", order, linked_by="sink:crm")
    # a customer master data knew under the connection's name already (resolved before
    # meta.system): its name-derived id is its golden id, no alias needed
    anna = await service.resolve("customer", "shop", "7", ANNA)
    assert anna == derived("customer", "shop", "7")
    await xwalk.link("customer", "shopify", "7", anna, linked_by="sink:shop-admin")
    connections = {"shop": "shopify", "shop-admin": "shopify", "erp": "tryton", "crm": "crm"}

    dry = await alias_legacy_ids(db, connections, actor="cli:test", dry_run=True, page=2)
    assert await service.golden("order", derived("order", "shop", "1001")) is None
    counts = await alias_legacy_ids(db, connections, actor="cli:test", page=2)
    summary = {n: (c.system, c.rows, c.written, c.kept) for n, c in counts.items()}
    assert summary == {
        "shop": ("shopify", 3, 2, 0),  # order 1001, product p-1; Anna's is her golden id
        "shop-admin": ("shopify", 3, 3, 0),  # a sink: harmless ids nothing published
        "erp": ("tryton", 1, 1, 0),
    }
    assert {n: (c.written, c.kept) for n, c in dry.items()} == {
        n: (c.written, c.kept) for n, c in counts.items()
    }
    assert [a.alias for a in counts["erp"].examples] == [derived("order", "erp", "SO-1")]

    for entity, old, now in (
        ("order", derived("order", "shop", "1001"), order),
        ("product", derived("product", "shop", "p-1"), "prd_x"),
        ("order", derived("order", "erp", "SO-1"), order),
        ("customer", anna, anna),
    ):
        assert await _resolves(service, entity, old) == now, (entity, old)
    alias = await service.golden("order", derived("order", "shop", "1001"))
    assert alias is not None and alias["status"] == "alias"
    [step] = alias["history"]
    assert (step["action"], step["actor"]) == ("alias", "cli:test")
    assert "'shop'" in step["reason"] and "'shopify'" in step["reason"]
    assert (step["detail"]["system"], step["detail"]["external_id"]) == ("shop", "1001")
    assert (await service.golden("customer", anna) or {}).get("status") == "active"
    # CRM's ids are derived from its system already: nothing of it was read
    assert await service.golden("order", derived("order", "crm", "d-1")) is None

    # idempotent: run again, nothing written, the same answers
    again = await alias_legacy_ids(db, connections, actor="cli:test")
    assert {n: (c.written, c.kept) for n, c in again.items()} == {
        "shop": (0, 2),
        "shop-admin": (0, 3),
        "erp": (0, 1),
    }
    assert (
        len((await service.golden("order", derived("order", "shop", "1001")) or {})["history"]) == 1
    )

    # an alias of a merged golden record follows the merge
    otto = await service.resolve("customer", "shop", "8", {"first_name": "Otto", "email": "o@x.de"})
    await service.merge("customer", otto, anna, actor="steward:ann")
    assert await _resolves(service, "customer", derived("customer", "shop-admin", "7")) == otto


def test_the_command_reads_hub_yaml_and_says_what_it_did(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"mappings: {REPO / 'mappings'}\n"
        "connections:\n"
        "  shop: {connector: shopify, options: {webhook_secret: env:SHOP_SECRET}}\n"
        "  outbox: {connector: file, options: {path: out.jsonl}}\n"
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    env = {"SHOP_SECRET": "s" * 32, "HUB_STATE_DIR": str(tmp_path)}
    first = hub("mdm", "alias-legacy-ids", "-c", str(config), "--url", url, **env)
    assert first.returncode == 0, first.stderr
    assert "shop (system shopify): 0 crosswalk row(s), stored 0 alias(es), 0 kept" in first.stdout
    assert "outbox" not in first.stdout  # a destination: no inbound mapping derived its ids
    # a connection no longer in hub.yaml is named with its system
    named = hub("mdm", "alias-legacy-ids", "--connection", "old-shop=shopify", "--url", url)
    assert named.returncode == 0, named.stderr
    assert "old-shop (system shopify): 0 crosswalk row(s)" in named.stdout
    unknown = hub("mdm", "alias-legacy-ids", "-c", str(config), "--connection", "nope", **env)
    assert unknown.returncode == 1
    assert "no connection 'nope'" in unknown.stderr and "--connection nope=SYSTEM" in unknown.stderr
