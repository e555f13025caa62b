"""The dashboard in a real browser: Debian's chromium (/usr/bin/chromium, ``make
browser-deps`` installs it) driven by Playwright's Python API against a hub on 127.0.0.1.
Playwright never downloads a browser here: it launches ``executable_path``. Run only these
with ``pytest -m browser``; screenshots go to ``$HUB_TEST_ARTIFACTS`` (default
``test-artifacts/``, ignored by git)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.auth import Auth
from hub.crosswalk import Crosswalk
from hub.mdm import DeterministicResolver
from hub.runtime import Hub

from .support.harness import (
    ORDER_BODY,
    HubFactory,
    RecordingSink,
    config_text,
    post,
    shopify_headers,
    until,
)
from .test_mdm_api import MDM_CONFIG
from .test_mdm_service import ANNA, ANNA_CRM, MAYBE_ANNA, OTTO
from .test_opsapi import dead_letters
from .test_orders_api import SHOP_ORDER_ID, systems
from .test_orders_api import hub_yaml as orders_hub_yaml

__all__ = ["systems"]  # the fixture, shared with test_orders_api

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("HUB_TEST_ARTIFACTS", "test-artifacts"))
PASSWORD = "correct horse battery"

playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'")
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} is missing: make browser-deps", allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    profile = tempfile.mkdtemp(prefix="hub-chromium-")  # an empty --user-data-dir
    os.makedirs(ARTIFACTS, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True
        )
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def evil_site(html: str) -> AsyncIterator[str]:
    """A page of another site: http://localhost:PORT/ (the hub is http://127.0.0.1:...)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = html.encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {len(body)}\r\n"
        writer.write(head.encode() + b"connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://localhost:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


async def new_page(context: Any, width: int = 1280) -> tuple[Any, list[str]]:
    """A page, and the console errors and uncaught exceptions it logs."""
    page = await context.new_page()
    await page.set_viewport_size({"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def log_in(page: Any, hub: Hub, name: str) -> None:
    await page.goto(f"{hub.base_url}/ui/")
    await page.wait_for_url("**/ui/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#role")


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_an_operator_fixes_and_replays_a_failed_order(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    (letter,) = await dead_letters(hub, range(9500, 9501))
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, errors = await new_page(browser)
    await log_in(page, hub, "olivia")
    assert await page.text_content("#role") == "olivia (operator)"
    await page.wait_for_selector("#updated")
    await shot(page, "overview")

    await page.click("text=Failed messages")
    await page.wait_for_selector("a.open-item")
    assert "1 matching" in (await page.text_content("#total") or "")
    await shot(page, "failed-messages")
    await page.click("a.open-item")
    await page.wait_for_selector("#payload")
    assert "on_hold" in await page.input_value("#payload")
    facts = await page.text_content(".facts") or ""
    assert "MappingFailed" in facts and "shopify/orders_create" in facts
    assert "[object" not in facts

    # a syntax error is shown at once, and replay is off until it is fixed
    original = await page.input_value("#payload")
    await page.fill("#payload", original.replace('"on_hold"', '"on_hold'))
    assert "JSON syntax error" in (await page.text_content("#syntax") or "")
    assert await page.is_disabled("#replay")
    # a value the mapping refuses: the server's check (422) is shown, nothing is sent
    await page.fill("#payload", original.replace('"on_hold"', '"frozen"'))
    await page.click("#replay")
    await page.wait_for_selector("#result .error")
    assert "422" in (await page.text_content("#result") or "")
    assert sink.attempts == []
    # the fix: the diff shows it, the replay sends it
    await page.fill("#payload", original.replace('"on_hold"', '"paid"'))
    diff = await page.text_content("#diff") or ""
    assert "- " in diff and '"financial_status": "on_hold"' in diff and '"paid"' in diff
    await shot(page, "fix-and-replay")
    await page.click("#replay")
    await page.wait_for_selector("#replayed")
    assert (await sink.next()).body["status"] == "paid"
    await page.wait_for_selector("text=delivered to erp", timeout=30000)
    await shot(page, "replayed")
    # the browser logs the refused check (422) itself; nothing else went wrong
    assert [e for e in errors if "status of 422" not in e] == []

    # and at phone width the list still works
    phone, phone_errors = await new_page(browser, width=390)
    await phone.goto(f"{hub.base_url}/ui/failed?status=replayed")
    await phone.wait_for_selector("a.open-item")
    await shot(phone, "failed-messages-phone")
    assert phone_errors == []
    assert letter["id"] in (await phone.get_attribute("a.open-item", "href") or "")


async def test_a_viewer_sees_masked_emails_and_cannot_replay(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    (letter,) = await dead_letters(hub, range(9600, 9601))
    await Auth(hub.db).add_user("victor", PASSWORD, "viewer")
    page, errors = await new_page(browser)
    await log_in(page, hub, "victor")
    await page.goto(f"{hub.base_url}/ui/failed/{letter['id']}")
    await page.wait_for_selector("#read-only")
    payload = await page.input_value("#payload")
    assert "jon@example.com" not in payload and "•••@example.com" in payload
    assert await page.query_selector("#replay") is None
    await shot(page, "viewer")
    # the page hides the button; the API refuses the write itself, even with the CSRF token
    status = await page.evaluate(
        """async (id) => {
            const me = await (await fetch('/api/auth/me')).json();
            const r = await fetch(`/api/deadletters/${id}/replay`, {method: 'POST',
                headers: {'X-CSRF-Token': me.csrf}});
            return r.status;
        }""",
        letter["id"],
    )
    assert status == 403
    assert [e for e in errors if "status of 403" not in e] == []  # the browser logs that 403


async def test_a_form_posted_from_another_site_is_refused(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    (letter,) = await dead_letters(hub, range(9700, 9701))
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, _ = await new_page(browser)
    await log_in(page, hub, "olivia")
    # a page of another site, in the same browser, posts a form to the hub
    target = f"{hub.base_url}/api/deadletters/{letter['id']}/replay"
    html = (
        f'<form method="post" action="{target}" target="out"><input name="payload" value="{{}}">'
        '</form><iframe name="out"></iframe>'
    )
    attack = await browser.new_page()
    async with evil_site(html) as evil:
        await attack.goto(evil)
        async with attack.expect_response(target) as answered:
            await attack.evaluate("() => document.forms[0].submit()")
        assert (await answered.value).status == 403
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        item = (await client.get(f"/api/deadletters/{letter['id']}")).json()
    assert item["replays"] == 0 and item["status"] == "open"
    assert sink.attempts == []


async def test_the_login_page_shows_the_rate_limit(hubs: HubFactory, browser: Any) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, _ = await new_page(browser)
    await page.goto(f"{hub.base_url}/ui/login")
    for _ in range(5):
        await page.fill("input[name=name]", "olivia")
        await page.fill("input[name=password]", "wrong password")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#login-error:has-text('wrong name or password')")
        await page.evaluate("() => { document.getElementById('login-error').textContent = '' }")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('too many failed logins')")
    assert page.url.endswith("/ui/login")


async def test_a_bulk_replay_by_filter_shows_its_progress(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    await dead_letters(hub, range(9800, 9803))
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, errors = await new_page(browser)
    await log_in(page, hub, "olivia")
    await page.goto(f"{hub.base_url}/ui/failed?error_class=MappingFailed")
    await page.wait_for_selector("#bulk-start")
    asked: list[str] = []

    async def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.click("#bulk-start")
    await page.wait_for_selector("#bulk-progress:has-text('finished')", timeout=60000)
    assert asked == ["Replay 3 open dead letters?"]
    progress = await page.text_content("#bulk-progress") or ""
    assert "3 of 3 replayed" in progress
    await shot(page, "bulk-replay")
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        items = (await client.get("/api/deadletters")).json()["items"]
    # each was replayed once (unfixed, they fail again: new dead letters, replay_of set)
    assert [x["replays"] for x in items if not x["replay_of"]] == [1, 1, 1]
    assert errors == []


async def mdm_hub(hubs: HubFactory) -> tuple[Hub, str, str, int]:
    """A hub with MDM: Anna (shop and CRM, linked), a maybe-Anna waiting in the review
    queue, and an Otto whose e-mail fails normalisation. (hub, anna, maybe, review id)"""
    hub = await hubs.start(None, config=MDM_CONFIG, roles=frozenset({"ingress"}))
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    await hub.mdm.resolve("customer", "crm", "c-7", ANNA_CRM)
    maybe = await hub.mdm.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    await hub.mdm.resolve("customer", "shop", "2", {**OTTO, "email": "not an e-mail"})
    assert maybe.review_id is not None
    return hub, anna, maybe.golden_id, maybe.review_id


async def test_a_steward_merges_two_golden_customers_from_the_review_queue(
    hubs: HubFactory, browser: Any
) -> None:
    hub, anna, maybe, review_id = await mdm_hub(hubs)
    await Auth(hub.db).add_user("stella", PASSWORD, "steward")
    page, errors = await new_page(browser)
    await log_in(page, hub, "stella")
    await page.click("text=Master data")
    await page.wait_for_selector(f"article[data-review='{review_id}']")
    quality = await page.text_content("#quality") or ""
    assert "Review tasks open1" in quality.replace("\n", "")
    failing = await page.text_content("main") or ""
    assert "shop" in failing and "email" in failing  # Otto's e-mail failed normalisation
    await shot(page, "master-data")
    await page.fill(f"#reason-{review_id}", "same birthday but a typo")
    await page.click(f"article[data-review='{review_id}'] button.accept[data-candidate='{anna}']")
    await page.wait_for_selector("#decided")
    await page.wait_for_selector("#queue-empty")
    assert "Review tasks accepted1" in (await page.text_content("#quality") or "").replace("\n", "")
    record = await hub.mdm.golden("customer", maybe)
    assert record is not None and (record["status"], record["merged_into"]) == ("merged", anna)

    # the survivor's page: its crosswalk has the CRM's c-8 now, its history the merge
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{anna}")
    await page.wait_for_selector("#crosswalk")
    assert "c-8" in (await page.text_content("#crosswalk") or "")
    assert "merged-in" in (await page.text_content("#history") or "")
    fields = await page.text_content("#fields") or ""
    assert "z@example.net" in fields and "Hauptstraße 5" in fields  # a steward sees them whole
    assert "null" not in fields
    await shot(page, "golden-record")
    # the merged one's page undoes it
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{maybe}")
    await page.wait_for_selector("#unmerge")
    await page.fill("#golden-reason", "not her after all")
    await page.click("#unmerge")
    await page.wait_for_selector("#unmerged")
    await page.wait_for_selector("#golden-facts:has-text('active')")
    record = await hub.mdm.golden("customer", maybe)
    assert record is not None and record["status"] == "active"
    assert [h["actor"] for h in record["history"][:2]] == ["steward:stella", "steward:stella"]

    # search by e-mail, as the matcher normalises it
    await page.goto(f"{hub.base_url}/ui/mdm?entity=customer&email=+ANNA.Mueller@example.com")
    await page.wait_for_selector(f"#found a.golden-link:has-text('{anna}')")
    # at phone width the queue page still works
    phone, phone_errors = await new_page(browser, width=390)
    await phone.goto(f"{hub.base_url}/ui/mdm")
    await phone.wait_for_selector("#quality")
    await shot(phone, "master-data-phone")
    assert errors == [] and phone_errors == []


async def test_an_alias_or_merged_away_ids_page_shows_what_it_resolves_to(
    hubs: HubFactory, browser: Any
) -> None:
    """An id that is no golden record of its own says where it comes from and shows the record
    it resolves to, with its history; it offers no action that can only fail (no merge into an
    alias, no unmerge while the survivor is merged further)."""
    hub, anna, maybe, _review_id = await mdm_hub(hubs)
    await Auth(hub.db).add_user("stella", PASSWORD, "steward")
    derived = DeterministicResolver().golden_id
    old, otto = derived("customer", "crm", "c-7"), derived("customer", "shop", "2")
    await hub.mdm.merge("customer", anna, maybe, actor="steward:ann")
    await hub.mdm.merge("customer", otto, anna, actor="steward:ann")
    page, errors = await new_page(browser)
    await log_in(page, hub, "stella")

    # c-7's id from before it was linked to Anna, who was merged into Otto since
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{old}")
    await page.wait_for_selector("#resolved-crosswalk")
    notice = await page.text_content("#golden-resolves") or ""
    assert "crm:c-7" in notice and anna in notice and otto in notice
    assert "link" in (await page.text_content("#history") or "")  # the step that stored it
    assert "c-7" in (await page.text_content("#resolved-crosswalk") or "")
    assert "merged-in" in (await page.text_content("#resolved-history") or "")
    assert await page.query_selector("#merge-in") is None
    assert await page.query_selector("#unmerge") is None
    assert "crm:c-7" in (await page.text_content("#unlink") or "")  # what it can do: unlink
    await shot(page, "golden-alias")
    # the merged-away id: its survivor was merged further, so it says what to unmerge first
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{maybe}")
    await page.wait_for_selector("#unmerge-first")
    assert otto in (await page.text_content("#golden-resolves") or "")
    assert "merge" in (await page.text_content("#history") or "")
    assert await page.query_selector("#unmerge") is None
    assert await page.query_selector("#merge-in") is None
    # ... which it links to, where unmerging works
    await page.click(f"#unmerge-first a:has-text('{anna}')")
    await page.wait_for_selector("#unmerge")
    await page.click("#unmerge")
    await page.wait_for_selector("#unmerged")
    assert (await hub.mdm.golden("customer", anna) or {}).get("status") == "active"
    # the alias's record was linked by a score: unlinked, it is a golden record of its own
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{old}")
    await page.click("#unlink")
    await page.wait_for_selector("#unlinked")
    await page.wait_for_selector("#merge-in")  # its page now: an active golden record
    assert (await hub.mdm.lookup("customer", "crm", "c-7") or {}).get("golden_id") == old

    # an order the ERP reported creating: its id there derived an alias of the shop's order id,
    # which master data keeps no golden record of (no matching for orders): nothing to decide
    order = derived("order", "shopify", "1001")
    xwalk = Crosswalk(hub.db)
    await xwalk.link_many([("order", "shopify", "1001", order)], linked_by="source", reason="in")
    await xwalk.link("order", "tryton", "SO-5", order, linked_by="sink:erp")
    await page.goto(f"{hub.base_url}/ui/mdm/order/{derived('order', 'tryton', 'SO-5')}")
    await page.wait_for_selector("#resolved-crosswalk")
    assert "SO-5" in (await page.text_content("#resolved-crosswalk") or "")
    assert "tryton:SO-5" in (await page.text_content("#golden-resolves") or "")
    assert await page.query_selector("#unlink") is None  # no golden record to unlink it from
    await page.goto(f"{hub.base_url}/ui/mdm/order/{order}")
    await page.wait_for_selector("#crosswalk")
    assert "linked" in (await page.text_content("#golden-facts") or "")
    for action in ("#unlink", "#merge-in", "#unmerge"):
        assert await page.query_selector(action) is None, action
    assert errors == []


async def test_a_viewer_sees_master_data_masked_and_cannot_decide(
    hubs: HubFactory, browser: Any
) -> None:
    hub, anna, _maybe, review_id = await mdm_hub(hubs)
    await Auth(hub.db).add_user("victor", PASSWORD, "viewer")
    page, errors = await new_page(browser)
    await log_in(page, hub, "victor")
    await page.goto(f"{hub.base_url}/ui/mdm")
    await page.wait_for_selector(f"article[data-review='{review_id}']")
    assert await page.query_selector("button.accept") is None
    await page.click(f"article[data-review='{review_id}'] summary")
    queue = await page.text_content("#queue") or ""
    assert "z@example.net" not in queue and "•••@example.net" in queue
    assert "10115" not in queue
    await page.goto(f"{hub.base_url}/ui/mdm/customer/{anna}")
    await page.wait_for_selector("#crosswalk")
    text = await page.text_content("main") or ""
    assert "•••@example.org" in text
    assert "a.mueller@example.org" not in text and "anna.mueller@example.com" not in text
    assert "Hauptstraße" not in text and "23456789" not in text and "10115" not in text
    assert await page.query_selector("#merge-in") is None
    # the API refuses a viewer's decisions, CSRF token or not
    statuses = await page.evaluate(
        """async ([id, anna]) => {
            const me = await (await fetch('/api/auth/me')).json();
            const post = async (path, body) => (await fetch('/api/mdm' + path, {method: 'POST',
                headers: {'X-CSRF-Token': me.csrf, 'Content-Type': 'application/json'},
                body: JSON.stringify(body)})).status;
            return [await post(`/reviews/${id}/accept`, {}),
                await post(`/reviews/${id}/reject`, {}),
                await post('/customer/merge', {survivor: anna, merged: 'x'}),
                await post('/customer/unmerge', {merged: anna})];
        }""",
        [review_id, anna],
    )
    assert statuses == [403, 403, 403, 403]
    assert [e for e in errors if "status of 403" not in e] == []
    task = await hub.mdm.review(review_id)
    assert task is not None and task["status"] == "open"


async def test_an_admin_manages_users_and_tokens_and_sees_it_audited(
    hubs: HubFactory, browser: Any
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await Auth(hub.db).add_user("ada", PASSWORD, "admin")
    page, errors = await new_page(browser)
    await log_in(page, hub, "ada")
    await page.click("text=Users and tokens")
    await page.wait_for_selector("#add-user")
    await page.fill("#add-user input[name=name]", "otto")
    await page.fill("#add-user input[name=password]", "first password")
    await page.select_option("#add-user select[name=role]", "viewer")
    await page.click("#add-user button")
    await page.wait_for_selector("tr[data-user=otto]")
    await page.select_option("tr[data-user=otto] select.role", "operator")
    await page.wait_for_selector("#users-result:has-text('otto is operator now')")
    await page.wait_for_selector("tr[data-user=otto] select.role")
    await page.fill("tr[data-user=otto] input.new-password", "second password")
    await page.click("tr[data-user=otto] button.reset")
    await page.wait_for_selector("#users-result:has-text('password is set')")
    who = (await Auth(hub.db).login("otto", "second password", "10.1.1.1"))[1]
    assert who.role == "operator"
    await page.wait_for_selector("tr[data-user=otto] button.disable")
    await page.click("tr[data-user=otto] button.disable")
    await page.wait_for_selector("tr[data-user=otto]:has-text('disabled')")
    assert (await Auth(hub.db).user("otto") or {})["disabled"] is True
    # a weak password is refused with the reason
    await page.fill("tr[data-user=ada] input.new-password", "short")
    await page.click("tr[data-user=ada] button.reset")
    await page.wait_for_selector("#users-result:has-text('at least 8')")

    # a token: shown once, listed without its value, works, then revoked
    await page.fill("#add-token input[name=name]", "nightly")
    await page.select_option("#add-token select[name=role]", "viewer")
    await page.click("#add-token button")
    await page.wait_for_selector("#token-value")
    token = await page.text_content("#token-value") or ""
    assert token.startswith("hub_")
    listed = await page.text_content("#tokens") or ""
    assert "nightly" in listed and token not in listed
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        bearer = {"authorization": f"Bearer {token}"}
        assert (await client.get("/api/auth/me", headers=bearer)).json()["role"] == "viewer"
        await page.reload()
        await page.wait_for_selector("button.revoke")
        assert token not in (await page.content())
        await shot(page, "users-and-tokens")  # without the token's value: shown once, gone
        await page.click("button.revoke")
        await page.wait_for_selector("#tokens:has-text('revoked')")
        assert (await client.get("/api/auth/me", headers=bearer)).status_code == 401

    # all of it in the audit log, passwords and the token's value never
    await page.click("text=Audit log")
    await page.wait_for_selector("table")
    audit = await page.text_content("main") or ""
    for action in ("POST /users", "PATCH /users/otto", "POST /tokens", "DELETE /tokens/"):
        assert action in audit, action
    assert "second password" not in audit and token not in audit
    await shot(page, "audit-log")
    assert [e for e in errors if "status of 422" not in e] == []

    # an operator neither sees the pages nor may use the API behind them
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    await page.click("#logout")
    await page.wait_for_url("**/ui/login")
    await log_in(page, hub, "olivia")
    assert await page.query_selector("text=Users and tokens") is None
    await page.goto(f"{hub.base_url}/ui/users")
    await page.wait_for_selector("[role=alert]:has-text('403')")


async def test_mappings_and_connections_live_reload_problems_and_checks(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    extra = """
  - name: orders-to-gone
    from: canonical.order
    to: gone
"""
    config = config_text(sink.url, extra).replace(
        "\nroutes:",
        f"""
  gone:
    connector: http
    options:
      url: http://user:hunter2-in-url@127.0.0.1:{port}/orders
routes:""",
    )
    hub = await hubs.start(sink.url, config=config, reload_interval_s=0)
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, errors = await new_page(browser)
    await log_in(page, hub, "olivia")
    await page.click("text=Mappings and connections")
    await page.wait_for_selector("#mappings")
    version = hub.mappings.mappings["shopify/orders_create"].version
    mappings = await page.text_content("#mappings") or ""
    assert "shopify/orders_create" in mappings and version in mappings
    assert "shop-orders-in" in mappings
    assert "Not reloaded" in (await page.text_content("#reload") or "")
    # a check run on demand: the reachable destination answers, the gone one says why
    await page.click("button.check[data-connection=erp]")
    await page.wait_for_selector("tr:has(button[data-connection=erp]) .check-result.ok")
    await page.click("button.check[data-connection=gone]")
    await page.wait_for_selector("tr:has(button[data-connection=gone]) .check-result.error")
    gone = await page.text_content("tr:has(button[data-connection=gone]) .check-result") or ""
    assert "cannot be reached" in gone
    # secrets are never on the page: the webhook secret, the password in a URL
    html = await page.content()
    assert os.environ["TEST_SHOPIFY_SECRET"] not in html and "hunter2" not in html
    assert "[secret]" in html
    await shot(page, "mappings-and-connections")

    # a broken mapping is refused on reload: its problems show, the old version keeps running
    mapping_dir = Path(hub.config.mappings_dir)
    broken = mapping_dir.parent / "broken-mappings"
    shutil.copytree(mapping_dir, broken)
    try:
        (broken / "shopify" / "orders_create.yaml").write_text("fields: [not, a, mapping\n")
        hub.settings.config.write_text(
            hub.settings.config.read_text().replace(str(mapping_dir), str(broken))
        )
        assert await hub.reload() is False
        await page.reload()
        await page.wait_for_selector("#reload-problems")
        problems = await page.text_content("#reload-problems") or ""
        assert "orders_create" in problems
        assert version in (await page.text_content("#mappings") or "")
        await page.goto(f"{hub.base_url}/ui/")
        await page.wait_for_selector("#reload-state.error")
        assert version in (await page.text_content("#live-mappings") or "")
    finally:
        shutil.rmtree(broken)
    assert errors == []

    # a viewer sees the page without the checks, and the API refuses a viewer's check
    await Auth(hub.db).add_user("victor", PASSWORD, "viewer")
    await page.click("#logout")
    await page.wait_for_url("**/ui/login")
    await log_in(page, hub, "victor")
    await page.goto(f"{hub.base_url}/ui/mappings")
    await page.wait_for_selector("#connections")
    assert await page.query_selector("button.check") is None
    status = await page.evaluate(
        """async () => {
            const me = await (await fetch('/api/auth/me')).json();
            return (await fetch('/api/connections/erp/check', {method: 'POST',
                headers: {'X-CSRF-Token': me.csrf}})).status;
        }"""
    )
    assert status == 403


async def test_the_overview_shows_lag_sources_and_mappings_and_updates_itself(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, errors = await new_page(browser)
    await log_in(page, hub, "olivia")
    await page.wait_for_selector("#lag")
    lag = await page.text_content("#lag") or ""
    assert hub.settings.mapper_group in lag
    assert hub.settings.delivery_group("erp") in lag
    live = await page.text_content("#live-mappings") or ""
    assert hub.mappings.mappings["shopify/orders_create"].version in live
    # it updates by itself: a dead letter appears without a reload
    first = await page.text_content("#updated")
    await dead_letters(hub, range(9900, 9901))
    await page.wait_for_selector("text=MappingFailed", timeout=30000)
    assert await page.text_content("#updated") != first
    await shot(page, "overview")
    assert errors == []


async def test_an_operator_pauses_and_resumes_a_destination_from_the_overview(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    hub = await hubs.start(sink.url)
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    await Auth(hub.db).add_user("victor", PASSWORD, "viewer")
    page, errors = await new_page(browser)
    asked: list[str] = []

    async def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept("ERP maintenance until 6")

    page.on("dialog", answer)
    await log_in(page, hub, "olivia")
    await page.click("#destinations button.pause[data-destination=erp]")
    await page.wait_for_selector("#destinations .badge.paused")
    assert "its events wait in Kafka" in asked[0]
    row = await page.text_content("#destinations") or ""
    assert "by user:olivia" in row and "ERP maintenance until 6" in row  # as the audit log names
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api") as api:
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert (erp["pause"]["paused_by"], erp["pause"]["reason"]) == (
            "user:olivia",
            "ERP maintenance until 6",
        )
    await shot(page, "overview-paused")

    await page.click("#destinations button.resume[data-destination=erp]")
    await page.wait_for_selector("#destinations button.pause[data-destination=erp]")
    assert await page.query_selector("#destinations .badge.paused") is None
    async with httpx.AsyncClient(base_url=f"{hub.base_url}/api") as api:
        (erp,) = (await api.get("/destinations")).json()["items"]
        assert erp["pause"] is None
        # paused again (by the local operator): a viewer sees it, and no button
        assert (await api.post("/destinations/erp/pause", json={})).status_code == 200
    await page.click("#logout")
    await page.wait_for_url("**/ui/login")
    await log_in(page, hub, "victor")
    await page.wait_for_selector("#destinations .badge.paused")
    assert "by local" in (await page.text_content("#destinations") or "")
    assert await page.query_selector("#destinations button") is None  # a viewer reads only
    assert errors == []


async def test_an_orders_journey_shows_each_step_and_links_its_dead_letter(
    hubs: HubFactory, systems: str, browser: Any
) -> None:
    hub = await hubs.start(config=orders_hub_yaml(systems))
    answer = await post(hub, ORDER_BODY, shopify_headers(ORDER_BODY, "delivery-1"))
    assert answer.status_code == 202, answer.text

    async def travelled() -> bool:
        found = await hub.journal.golden_ids(SHOP_ORDER_ID)
        if not found:
            return False
        steps = [e["step"] for e in (await hub.journal.journey(found[0]))["events"]]
        return "delivered" in steps and "dead_letter" in steps

    await until(travelled)
    await Auth(hub.db).add_user("olivia", PASSWORD, "operator")
    page, errors = await new_page(browser)
    await log_in(page, hub, "olivia")
    await page.click("text=Orders")
    await page.fill("#order-search input[name=ref]", "#9999")  # the shop's order number
    await page.click("#order-search button")
    await page.wait_for_selector("#journey")
    steps = await page.eval_on_selector_all(
        "#journey tr.step", "rows => rows.map(r => r.dataset.step)"
    )
    assert steps[0] == "received" and steps.index("mapped") < steps.index("delivered")
    assert "dead_letter" in steps
    journey = await page.text_content("#journey") or ""
    assert (
        "paid" in journey
        and "delivered to erp (acme-erp) by route orders-to-erp as SO-17" in journey
    )
    ids = await page.text_content("#order-ids") or ""
    assert SHOP_ORDER_ID in ids and "SO-17" in ids
    assert "john@example.com" in (await page.text_content("#order-facts") or "")
    await shot(page, "order-journey")
    # the same order by the ERP's id, then by its customer's e-mail
    await page.goto(f"{hub.base_url}/ui/orders?ref=SO-17")
    await page.wait_for_selector("#journey")
    await page.goto(f"{hub.base_url}/ui/orders?ref=John%40Example.com")
    await page.click("a.order-link")
    await page.wait_for_selector("#journey")
    # its dead letter, one click away
    await page.click("#journey a.dead-letter-link")
    await page.wait_for_selector("#payload")
    assert "unknown carrier" in (await page.text_content(".facts") or "")
    # an unknown order says so
    await page.goto(f"{hub.base_url}/ui/orders?ref=nothing-like-it")
    await page.wait_for_selector("[role=alert]:has-text('404')")
    assert [e for e in errors if "status of 404" not in e] == []

    # a viewer follows it too, the customer's e-mail masked
    await Auth(hub.db).add_user("victor", PASSWORD, "viewer")
    await page.click("#logout")
    await page.wait_for_url("**/ui/login")
    await log_in(page, hub, "victor")
    await page.goto(f"{hub.base_url}/ui/orders?ref=%239999")
    await page.wait_for_selector("#journey")
    facts = await page.text_content("#order-facts") or ""
    assert "john@example.com" not in facts and "•••@example.com" in facts
    phone, phone_errors = await new_page(browser, width=390)
    await phone.goto(f"{hub.base_url}/ui/orders?ref=SO-17")
    await phone.wait_for_selector("#journey")
    await shot(phone, "order-journey-phone")
    assert phone_errors == []


async def test_every_page_loads_clean_at_desktop_and_phone_width(
    hubs: HubFactory, sink: RecordingSink, browser: Any
) -> None:
    """Each page, as an admin, at 1280 px and 390 px: no console error, nothing wider than
    the screen (wide tables scroll inside their box)."""
    config = MDM_CONFIG.split("\n", 1)[0] + "\n" + config_text(sink.url)
    hub = await hubs.start(sink.url, config=config)
    (letter,) = await dead_letters(hub, range(9990, 9991))
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    await hub.mdm.match_record("customer", "crm", "c-8", MAYBE_ANNA)
    await Auth(hub.db).add_user("ada", PASSWORD, "admin")
    page, errors = await new_page(browser)
    await log_in(page, hub, "ada")
    pages = {
        "/ui/": "#updated",
        "/ui/failed": "a.open-item",
        f"/ui/failed/{letter['id']}": "#payload",
        "/ui/orders": "#order-search",
        "/ui/mdm": "#quality",
        f"/ui/mdm/customer/{anna}": "#crosswalk",
        "/ui/mappings": "#connections",
        "/ui/users": "#users",
        "/ui/audit": "h1",
    }
    for width in (1280, 390):
        await page.set_viewport_size({"width": width, "height": 900})
        for path, ready in pages.items():
            await page.goto(f"{hub.base_url}{path}")
            await page.wait_for_selector(ready)
            wide = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert wide <= 1, (path, width, wide)
    assert errors == []
