"""The dashboard's security over HTTP, no browser: logins and sessions, roles, CSRF, API tokens,
the audit log, the login rate limit, masking for viewers, keyset pages of dead letters, the
``hub users`` and ``hub tokens`` commands. Real hubs on 127.0.0.1, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.auth import Auth, mask
from hub.cli import main as cli
from hub.db import Database
from hub.runtime import Hub

from .support.databases import hub_database_overrides  # noqa: F401  (fixture database_url)
from .support.harness import HubFactory, RecordingSink, config_text
from .test_mdm_api import MDM_CONFIG
from .test_mdm_service import ANNA, OTTO
from .test_opsapi import EVIL, assert_error, dead_letters

PASSWORD = "correct horse battery"


async def add_users(hub: Hub) -> None:
    auth = Auth(hub.db)
    for role in ("viewer", "operator", "admin"):
        await auth.add_user(role, PASSWORD, role)


@contextlib.asynccontextmanager
async def closing(*clients: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            await client.aclose()


async def logged_in(hub: Hub, name: str) -> tuple[httpx.AsyncClient, str]:
    """A client holding ``name``'s session cookie, and the session's CSRF token."""
    client = httpx.AsyncClient(base_url=hub.base_url, timeout=30)
    answer = await client.post("/api/auth/login", json={"name": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain HTTP on loopback; over HTTPS it is Secure
    return client, answer.json()["csrf"]


async def test_roles_csrf_masking_and_audit(hubs: HubFactory, sink: RecordingSink) -> None:
    hub = await hubs.start(sink.url)
    letters = await dead_letters(hub, range(9100, 9103))
    await add_users(hub)
    one, two = letters[0]["id"], letters[1]["id"]

    viewer, viewer_csrf = await logged_in(hub, "viewer")
    operator, csrf = await logged_in(hub, "operator")
    admin, _ = await logged_in(hub, "admin")
    async with closing(viewer, operator, admin):
        # a viewer reads, with e-mails, phones and addresses masked, and may not write
        seen = (await viewer.get(f"/api/deadletters/{one}")).json()
        assert "jon@example.com" not in json.dumps(seen)
        assert seen["payload"]["email"] == "•••@example.com"
        assert seen["payload"]["billing_address"]["address1"] == "•••"
        listed = await viewer.get("/api/deadletters")
        assert "jon@example.com" not in listed.text and listed.json()["total"] == 3
        refused = await viewer.post(
            f"/api/deadletters/{one}/replay", headers={"x-csrf-token": viewer_csrf}
        )
        assert "needs the role operator" in assert_error(refused, 403)["message"]
        assert_error(await viewer.get("/api/audit"), 403)
        # the operator sees the payload whole
        whole = (await operator.get(f"/api/deadletters/{one}")).json()
        assert whole["payload"]["email"] == "jon@example.com"

        # a write without the session's CSRF token, or with another session's, is refused
        for headers in ({}, {"x-csrf-token": viewer_csrf}, {"x-csrf-token": ""}):
            no = await operator.post(f"/api/deadletters/{one}/replay", headers=headers)
            assert assert_error(no, 403)["error"] == "csrf"
        # ... and so is a page of another origin, token or not
        evil = {**EVIL, "x-csrf-token": csrf, "content-type": "application/json"}
        assert_error(await operator.post(f"/api/deadletters/{one}/replay", headers=evil), 403)
        assert (await operator.get(f"/api/deadletters/{one}")).json()["replays"] == 0

        fixed = {**whole["payload"], "financial_status": "paid"}
        replayed = await operator.post(
            f"/api/deadletters/{one}/replay",
            headers={"x-csrf-token": csrf},
            json={"payload": fixed},
        )
        assert replayed.status_code == 200, replayed.text
        discarded = await operator.post(
            f"/api/deadletters/{two}/discard",
            headers={"x-csrf-token": csrf},
            json={"reason": "a test order"},
        )
        assert discarded.status_code == 200, discarded.text
        assert_error(await operator.get("/api/users"), 403)  # admin only

        # every write is in the audit log: who, what, before and after
        log = (await admin.get("/api/audit")).json()["items"]
        assert [(r["actor"], r["action"]) for r in log] == [
            ("user:operator", f"POST /deadletters/{two}/discard"),
            ("user:operator", f"POST /deadletters/{one}/replay"),
        ]
        assert log[0]["before"] == {"status": "open", "replays": 0}
        assert log[0]["after"]["request"] == {"reason": "a test order"}
        assert log[0]["after"]["answer"]["status"] == "discarded"
        assert log[1]["after"]["request"]["payload"]["financial_status"] == "paid"
        assert log[1]["ip"] == "127.0.0.1"

        # logging out ends the session: its cookie, sent again by hand, is refused
        old = operator.cookies["hub_session"]
        out = await operator.post("/api/auth/logout", headers={"x-csrf-token": csrf})
        assert out.status_code == 200
    async with httpx.AsyncClient(base_url=hub.base_url, cookies={"hub_session": old}) as stale:
        assert_error(await stale.get("/api/deadletters"), 401)
    assert (await sink.next()).body["status"] == "paid"  # the fix went through


async def test_sessions_end_on_logout_disable_and_role_change(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), **database_url)
    await add_users(hub)
    operator, _ = await logged_in(hub, "operator")
    admin, admin_csrf = await logged_in(hub, "admin")
    async with closing(operator, admin):
        assert (await operator.get("/api/auth/me")).json()["role"] == "operator"
        changed = await admin.patch(
            "/api/users/operator", headers={"x-csrf-token": admin_csrf}, json={"disabled": True}
        )
        assert changed.status_code == 200 and changed.json()["disabled"] is True
        assert_error(await operator.get("/api/auth/me"), 401)
        relogin = await operator.post(
            "/api/auth/login", json={"name": "operator", "password": PASSWORD}
        )
        assert_error(relogin, 401)
        bad_role = await admin.patch(
            "/api/users/operator", headers={"x-csrf-token": admin_csrf}, json={"role": "god"}
        )
        assert_error(bad_role, 422)
        assert_error(
            await admin.patch(
                "/api/users/nobody", headers={"x-csrf-token": admin_csrf}, json={"role": "viewer"}
            ),
            404,
        )
        users = (await admin.get("/api/users")).json()["items"]
        assert {u["name"]: u["disabled"] for u in users} == {
            "admin": False,
            "operator": True,
            "viewer": False,
        }
        assert "password_hash" not in json.dumps(users)
        log = (await admin.get("/api/audit")).json()["items"]
        assert log[-1]["action"] == "PATCH /users/operator"
        assert log[-1]["before"] == {"name": "operator", "role": "operator", "disabled": False}
        assert log[-1]["after"]["answer"]["disabled"] is True


async def test_a_login_from_another_origin_is_refused(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await add_users(hub)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        body = {"name": "admin", "password": PASSWORD}
        assert_error(
            await client.post(
                "/api/auth/login", json=body, headers={"origin": "http://evil.example"}
            ),
            403,
        )
        form = await client.post(
            "/api/auth/login",
            content=b"name=admin&password=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_error(form, 415, 422)
        assert "set-cookie" not in form.headers


async def test_logins_are_rate_limited_across_processes(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), **database_url)
    await add_users(hub)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        for _ in range(5):
            wrong = await client.post(
                "/api/auth/login", json={"name": "operator", "password": "wrong password"}
            )
            assert_error(wrong, 401)
        right = {"name": "operator", "password": PASSWORD}
        assert_error(await client.post("/api/auth/login", json=right), 429)
        # another user from the same address is not locked out by five failures
        ok = await client.post("/api/auth/login", json={"name": "admin", "password": PASSWORD})
        assert ok.status_code == 200, ok.text
    # another process on the same database refuses too: the attempts are in the table
    other = Database(hub.settings.database_url)
    try:
        with pytest.raises(Exception, match="too many failed logins"):
            await Auth(other).login("operator", PASSWORD, "10.0.0.9")
        # by address: twenty failures, any names, lock the address out
        for n in range(20):
            with pytest.raises(Exception, match="wrong name or password"):
                await Auth(other).login(f"nobody{n}", "x", "10.0.0.8")
        with pytest.raises(Exception, match="too many failed logins"):
            await Auth(other).login("viewer", PASSWORD, "10.0.0.8")
        who = (await Auth(other).login("viewer", PASSWORD, "10.0.0.7"))[1]
        assert who.role == "viewer"
    finally:
        await other.close()


async def test_api_tokens_are_shown_once_and_bounded_by_role(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), ops_token="bootstrap-admin-token")
    boot = {"authorization": "Bearer bootstrap-admin-token"}
    async with httpx.AsyncClient(base_url=hub.base_url, headers=boot) as admin:
        made = await admin.post("/api/tokens", json={"name": "nightly-report", "role": "viewer"})
        assert made.status_code == 201, made.text
        token, id_ = made.json()["token"], made.json()["id"]
        listed = (await admin.get("/api/tokens")).json()["items"]
        assert [t["id"] for t in listed] == [id_] and token not in json.dumps(listed)
        assert listed[0]["created_by"] == "ops-token"
        log = (await admin.get("/api/audit")).json()["items"]
        assert token not in json.dumps(log) and log[0]["actor"] == "ops-token"

    script = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=hub.base_url, headers=script) as client:
        assert (await client.get("/api/deadletters")).status_code == 200
        assert (await client.get("/api/auth/me")).json()["role"] == "viewer"
        assert_error(await client.post("/api/replays"), 403)  # a viewer's token cannot write
        assert_error(await client.get("/api/tokens"), 403)
    async with httpx.AsyncClient(base_url=hub.base_url, headers=boot) as admin:
        assert (await admin.delete(f"/api/tokens/{id_}")).status_code == 200
        assert_error(await admin.delete("/api/tokens/ffffffffffff"), 404)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        assert_error(await client.get("/api/deadletters", headers=script), 401)
        # a made-up token of the right shape, and no credentials at all, are refused
        fake = {"authorization": f"Bearer hub_{id_}_{'A' * 43}"}
        assert_error(await client.get("/api/deadletters", headers=fake), 401)
        assert_error(await client.get("/api/deadletters"), 401)


async def test_dead_letters_page_by_keyset_and_search(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    at = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        _row(f"dl{n:03d}", at - timedelta(seconds=n // 3), {"n": n, "note": f"item {n}"})
        for n in range(23)
    ]
    await hub.deadletters.record(rows)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        by_offset = (await client.get("/api/deadletters", params={"limit": 100})).json()
        expected = [x["id"] for x in by_offset["items"]]
        assert len(expected) == 23
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 5}
        while True:
            page = (await client.get("/api/deadletters", params=params)).json()
            assert page["total"] == 23
            seen += [x["id"] for x in page["items"]]
            if page["next"] is None:
                break
            params["after"] = page["next"]
        assert seen == expected  # ties on failed_at included, none twice, none missed
        found = (await client.get("/api/deadletters", params={"q": "ITEM 17"})).json()
        assert [x["id"] for x in found["items"]] == ["dl017"]
        nothing = (await client.get("/api/deadletters", params={"q": "100%_"})).json()
        assert nothing["total"] == 0
        assert_error(await client.get("/api/deadletters", params={"after": "bogus"}), 400)


def _row(id_: str, failed_at: datetime, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id_,
        "failed_at": failed_at,
        "stage": "map",
        "error_class": "MappingError",
        "error": "no rule",
        "attempts": 1,
        "attempt_times": None,
        "connection": "shop",
        "route": None,
        "mapping": None,
        "mapping_version": None,
        "destination": None,
        "event_id": id_,
        "event_type": "shop.order",
        "correlation_id": id_,
        "source_topic": "t",
        "source_partition": 0,
        "source_offset": 0,
        "key": None,
        "value": json.dumps(payload).encode(),
        "headers": [],
        "status": "open",
        "replay_of": None,
        "replays": 0,
    }


def test_mask_hides_personal_data_and_keeps_the_rest() -> None:
    value = {
        "email": "ann@example.org",
        "phone": "+44 20 7946 0958",
        "shipping_address": {"city": "Leeds", "country": "GB"},
        "billing_address": {"first_name": "Ann", "address1": "1 Road", "zip": None},
        "note": "call +33 1 23 45 67 89 or mail bob@example.com on 2026-12-01",
        "total": "10.00",
        "id": 12345678901,
    }
    masked = mask(value)
    assert masked["email"] == "•••@example.org"
    assert masked["phone"] == "•••"
    assert masked["shipping_address"] == {"city": "•••", "country": "GB"}
    assert masked["note"] == "call ••• or mail •••@example.com on 2026-12-01"
    assert masked["billing_address"] == {"first_name": "•••", "address1": "•••", "zip": None}
    assert masked["total"] == "10.00" and masked["id"] == 12345678901
    # a field named by value: a match explanation, a data-quality count
    explained = mask(
        [
            {"field": "street", "left": "hauptstr 5", "right": "hauptstrasse 5", "weight": 2.5},
            {"field": "last_name", "left": "muller", "right": "mueller", "weight": 1.0},
            {"system": "shop", "field": "email", "records": 3},
        ]
    )
    assert explained[0] == {"field": "street", "left": "•••", "right": "•••", "weight": 2.5}
    assert explained[1]["left"] == "muller"
    assert explained[2] == {"system": "shop", "field": "email", "records": 3}


async def test_pages_need_a_session(hubs: HubFactory) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await add_users(hub)
    async with httpx.AsyncClient(base_url=hub.base_url) as client:
        for path in (
            "/ui/",
            "/ui/failed",
            "/ui/failed/x",
            "/ui/audit",
            "/ui/mdm",
            "/ui/mdm/customer/cus_x",
            "/ui/mappings",
            "/ui/users",
            "/ui/orders",
        ):
            away = await client.get(path)
            assert away.status_code == 303 and away.headers["location"] == "/ui/login"
        login = await client.get("/ui/login")
        assert login.status_code == 200
        assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
        assert (await client.get("/ui/static/app.js")).status_code == 200
        assert (await client.get("/ui/static/../auth.py")).status_code == 404
    viewer, _ = await logged_in(hub, "viewer")
    async with closing(viewer):
        page = await viewer.get("/ui/failed")
        assert page.status_code == 200 and 'data-page="failed"' in page.text
        assert (await viewer.get("/ui/nonsense")).status_code == 404


def test_cli_bootstraps_users_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["users", "add", "ann", "--role", "admin", "--password-stdin", "--url", url]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["users", "add", "bob", "--password-stdin", "--url", url]) == 1
    assert "at least 8" in capsys.readouterr().err
    assert cli(["users", "set-role", "ann", "operator", "--url", url]) == 0
    assert cli(["users", "disable", "ann", "--url", url]) == 0
    capsys.readouterr()
    assert cli(["users", "list", "--url", url]) == 0
    assert capsys.readouterr().out.split() == ["ann", "operator", "disabled"]
    assert cli(["users", "disable", "nobody", "--url", url]) == 1

    assert cli(["tokens", "create", "ci", "--role", "operator", "--url", url]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("hub_")
    id_ = token.split("_")[1]
    assert cli(["tokens", "list", "--url", url]) == 0
    listed = capsys.readouterr().out
    assert id_ in listed and token not in listed and "active" in listed
    assert cli(["tokens", "revoke", id_, "--url", url]) == 0
    assert cli(["tokens", "revoke", "ffffffffffff", "--url", url]) == 1
    capsys.readouterr()
    assert cli(["tokens", "list", "--url", url]) == 0
    assert "revoked" in capsys.readouterr().out


async def test_a_viewer_gets_403_on_every_write_of_the_api(hubs: HubFactory) -> None:
    """Every write route the API has (its OpenAPI, so new ones are covered as they come): a
    viewer's session with its CSRF token is refused, and so is an operator's for master-data
    decisions and user administration; an admin's without the CSRF token or from a page of
    another origin too."""
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await add_users(hub)
    await Auth(hub.db).add_user("steward", PASSWORD, "steward")
    async with httpx.AsyncClient(base_url=hub.base_url) as anon:
        schema = (await anon.get("/openapi.json")).json()
    writes = [
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if path.startswith("/api/")
        and method in ("post", "put", "patch", "delete")
        and path not in ("/api/auth/login", "/api/auth/logout")
    ]
    assert len(writes) >= 13, writes
    viewer, viewer_csrf = await logged_in(hub, "viewer")
    operator, operator_csrf = await logged_in(hub, "operator")
    steward, steward_csrf = await logged_in(hub, "steward")
    async with closing(viewer, operator, steward):
        for method, path in writes:
            url = path.replace("{entity}", "customer").replace("{review_id}", "1")
            url = url.replace("{id_}", "1").replace("{job_id}", "1").replace("{name}", "viewer")
            url = url.replace("{", "").replace("}", "")
            for client, csrf, allowed in (
                (viewer, viewer_csrf, False),
                (
                    operator,
                    operator_csrf,
                    not path.startswith(("/api/mdm", "/api/users", "/api/tokens")),
                ),
                (steward, steward_csrf, not path.startswith(("/api/users", "/api/tokens"))),
            ):
                answer = await client.request(method, url, headers={"x-csrf-token": csrf}, json={})
                if allowed:
                    assert answer.status_code != 403 or answer.json()["error"] != "forbidden", (
                        method,
                        url,
                    )
                else:
                    assert answer.status_code == 403, (method, url, answer.text)
        # and every write needs the session's CSRF token, and a page of this origin — admin too
        admin, admin_csrf = await logged_in(hub, "admin")
        async with closing(admin):
            for method, path in writes:
                url = path.replace("{", "").replace("}", "")
                for headers in ({}, {"x-csrf-token": viewer_csrf}):
                    refused = await admin.request(method, url, headers=headers, json={})
                    assert assert_error(refused, 403)["error"] == "csrf", (method, url)
                evil = {**EVIL, "x-csrf-token": admin_csrf}
                assert_error(await admin.request(method, url, headers=evil, json={}), 403)
            log = (await admin.get("/api/audit")).json()["items"]
    assert all(not r["actor"].startswith(("user:viewer", "user:admin")) for r in log)


async def test_an_admin_resets_a_password_and_hostile_bodies_are_refused(
    hubs: HubFactory,
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}))
    await add_users(hub)
    operator, _ = await logged_in(hub, "operator")
    admin, csrf = await logged_in(hub, "admin")
    headers = {"x-csrf-token": csrf}
    async with closing(operator, admin):
        reset = await admin.patch(
            "/api/users/operator", headers=headers, json={"password": "a new secret"}
        )
        assert reset.status_code == 200, reset.text
        assert "password" not in reset.json() and "password_hash" not in reset.json()
        assert_error(await operator.get("/api/auth/me"), 401)  # their session ended
        assert (await Auth(hub.db).login("operator", "a new secret", "10.2.2.2"))[1].role
        log = (await admin.get("/api/audit")).json()["items"]
        assert log[0]["after"]["request"] == {"password": "[redacted]"}
        assert "a new secret" not in json.dumps(log)
        # hostile bodies: refused with a clear error, never a 500, nothing changed
        nested = "[" * 5000 + "1" + "]" * 5000
        for method, path, body in (
            ("PATCH", "/api/users/operator", {"password": "short"}),
            ("PATCH", "/api/users/operator", {"password": "p" * 100_000}),
            ("PATCH", "/api/users/operator", {"role": {"$ne": 1}}),
            ("POST", "/api/users", {"name": "<script>", "password": PASSWORD}),
            ("POST", "/api/users", {"name": "n" * 10_000, "password": PASSWORD}),
            ("POST", "/api/tokens", '{"name": ' + nested + ', "role": "admin"}'),
            ("PATCH", "/api/users/operator", nested),
        ):
            answer = await admin.request(
                method,
                path,
                headers={**headers, "content-type": "application/json"},
                content=body if isinstance(body, str) else json.dumps(body),
            )
            assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text[:200])
        big = await admin.post("/api/auth/login", json={"name": "admin", "password": "p" * 100_000})
        assert 400 <= big.status_code < 500
    assert (await Auth(hub.db).user("operator") or {})["role"] == "operator"
    assert [u["name"] for u in await Auth(hub.db).users()] == ["admin", "operator", "viewer"]


async def test_mappings_connections_and_their_figures(
    hubs: HubFactory, sink: RecordingSink
) -> None:
    hub = await hubs.start(sink.url, reload_interval_s=0)
    await add_users(hub)
    version = hub.mappings.mappings["shopify/orders_create"].version
    viewer, _ = await logged_in(hub, "viewer")
    operator, csrf = await logged_in(hub, "operator")
    async with closing(viewer, operator):
        listed = (await viewer.get("/api/mappings")).json()
        assert {"name": "shopify/orders_create", "version": version}.items() <= next(
            m for m in listed["items"] if m["name"] == "shopify/orders_create"
        ).items()
        assert listed["reload"] == {"at": None, "ok": True, "changed": [], "problems": []}
        conns = {c["name"]: c for c in (await viewer.get("/api/connections")).json()["items"]}
        assert conns["shop"]["options"]["webhook_secret"] == "[secret]"
        assert conns["erp"]["kinds"] == ["sink"] and conns["erp"]["outbound_routes"]
        checked = await operator.post("/api/connections/erp/check", headers={"x-csrf-token": csrf})
        assert checked.status_code == 200 and checked.json()["ok"] is True, checked.text
        assert_error(
            await operator.post("/api/connections/nope/check", headers={"x-csrf-token": csrf}),
            404,
        )
        assert_error(
            await operator.post(
                f"/api/connections/{'x' * 5000}/check", headers={"x-csrf-token": csrf}
            ),
            422,
        )
        log = (await operator.get("/api/auth/me")).json()
        assert log["role"] == "operator"
        # /metrics has the figures the overview shows
        metrics = (await operator.get("/metrics")).text
    assert (
        f'hub_mapping_version_info{{mapping="shopify/orders_create",version="{version}"}} 1.0'
        in (metrics)
    )
    assert "hub_config_reload_ok 1.0" in metrics
    assert f'hub_consumer_lag{{group="{hub.settings.mapper_group}"' in metrics
    assert await hub.reload() is True
    assert (await Auth(hub.db).audit_rows())[0]["action"] == "POST /connections/erp/check"
    assert hub.last_reload["ok"] is True and hub.last_reload["at"] is not None


def MDM_CONFIG_WITH_ERP(url: str) -> str:
    return MDM_CONFIG.split("\n", 1)[0] + "\n" + config_text(url)


async def _refuse_audit_rows(hub: Hub, refuse: bool) -> None:
    """A trigger that makes every insert into audit_log fail (or its removal)."""
    async with hub.db.engine.begin() as conn:
        if hub.db.dialect == "postgresql":
            if refuse:
                await conn.exec_driver_sql(
                    "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql"
                )
                await conn.exec_driver_sql(
                    "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION no_audit()"
                )
            else:
                await conn.exec_driver_sql("DROP TRIGGER no_audit ON audit_log")
                await conn.exec_driver_sql("DROP FUNCTION no_audit()")
        elif refuse:
            await conn.exec_driver_sql(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
            )
        else:
            await conn.exec_driver_sql("DROP TRIGGER no_audit")


async def test_the_audit_row_commits_with_the_write_or_neither_does(
    hubs: HubFactory, sink: RecordingSink, database_url: dict[str, str]
) -> None:
    hub = await hubs.start(sink.url, config=MDM_CONFIG_WITH_ERP(sink.url), **database_url)
    letters = await dead_letters(hub, range(9150, 9152))
    await add_users(hub)
    await Auth(hub.db).add_user("steward", PASSWORD, "steward")
    anna = await hub.mdm.resolve("customer", "shop", "1", ANNA)
    otto = await hub.mdm.resolve("customer", "shop", "2", OTTO)
    operator, csrf = await logged_in(hub, "operator")
    steward, steward_csrf = await logged_in(hub, "steward")
    admin, admin_csrf = await logged_in(hub, "admin")
    one, two = letters[0]["id"], letters[1]["id"]
    async with closing(operator, steward, admin):
        await _refuse_audit_rows(hub, True)
        try:
            # each write fails whole: 503, and nothing it would have changed is changed
            refused = [
                await operator.post(
                    f"/api/deadletters/{one}/discard", headers={"x-csrf-token": csrf}
                ),
                await operator.post(
                    f"/api/deadletters/{two}/replay", headers={"x-csrf-token": csrf}
                ),
                await steward.post(
                    "/api/mdm/customer/merge",
                    headers={"x-csrf-token": steward_csrf},
                    json={"survivor": anna, "merged": otto},
                ),
                await admin.post(
                    "/api/users",
                    headers={"x-csrf-token": admin_csrf},
                    json={"name": "eve", "password": PASSWORD},
                ),
                await admin.post(
                    "/api/tokens",
                    headers={"x-csrf-token": admin_csrf},
                    json={"name": "eve", "role": "admin"},
                ),
            ]
            for answer in refused:
                assert assert_error(answer, 503)["error"] == "audit_failed", answer.text
        finally:
            await _refuse_audit_rows(hub, False)
        item = (await operator.get(f"/api/deadletters/{one}")).json()
        assert (item["status"], item["replays"]) == ("open", 0)
        assert (await operator.get(f"/api/deadletters/{two}")).json()["replays"] == 0
        assert (await hub.mdm.golden("customer", otto) or {})["status"] == "active"
        assert await Auth(hub.db).user("eve") is None
        assert (await admin.get("/api/tokens")).json()["items"] == []
        assert (await admin.get("/api/audit")).json()["items"] == []
        assert sink.attempts == []

        # a write refused for the item's state (nothing changed) leaves no audit row either
        ok = await operator.post(f"/api/deadletters/{one}/discard", headers={"x-csrf-token": csrf})
        assert ok.status_code == 200, ok.text
        merged = await steward.post(
            "/api/mdm/customer/merge",
            headers={"x-csrf-token": steward_csrf},
            json={"survivor": anna, "merged": otto, "reason": "test"},
        )
        assert merged.status_code == 200, merged.text
        again = await steward.post(
            "/api/mdm/customer/merge",
            headers={"x-csrf-token": steward_csrf},
            json={"survivor": anna, "merged": otto},
        )
        assert_error(again, 409)
        log = (await admin.get("/api/audit")).json()["items"]
    assert [(r["actor"], r["action"]) for r in log] == [
        ("user:steward", "POST /mdm/customer/merge"),
        ("user:operator", f"POST /deadletters/{one}/discard"),
    ]
    # the row written with the write has its answer added once answered
    assert log[0]["after"]["status"] == 200 and log[0]["after"]["answer"]["survivor"] == anna
    assert log[0]["after"]["request"]["reason"] == "test"
    assert log[1]["before"] == {"status": "open", "replays": 0}


async def test_hostile_names_in_admin_paths_are_never_a_500(
    hubs: HubFactory, database_url: dict[str, str]
) -> None:
    hub = await hubs.start(None, roles=frozenset({"ingress"}), **database_url)
    await add_users(hub)
    admin, csrf = await logged_in(hub, "admin")
    headers = {"x-csrf-token": csrf}
    async with closing(admin):
        for name in ("a%00b", "x" * 3000, "%F0%9F%92%A9", "..%2F..%2Fetc", "<script>"):
            for method, path, body in (
                ("PATCH", f"/api/users/{name}", {"role": "viewer"}),
                ("DELETE", f"/api/tokens/{name}", None),
                ("POST", f"/api/connections/{name}/check", None),
                ("POST", f"/api/deadletters/{name}/discard", None),
                ("GET", f"/api/deadletters/{name}", None),
            ):
                answer = await admin.request(method, path, headers=headers, json=body)
                assert 400 <= answer.status_code < 500, (method, path, answer.text[:200])
        revoke_me = await admin.post(
            "/api/tokens", headers=headers, json={"name": "ci", "role": "viewer"}
        )
        id_ = revoke_me.json()["id"]
        assert (await admin.delete(f"/api/tokens/{id_}", headers=headers)).status_code == 200
        log = (await admin.get("/api/audit")).json()["items"]
    assert log[0]["action"] == f"DELETE /tokens/{id_}"
    assert log[0]["before"] == {"name": "ci", "role": "viewer", "revoked_at": None}
    assert [r["action"] for r in log] == [f"DELETE /tokens/{id_}", "POST /tokens"]


def test_cli_changes_commit_with_their_audit_rows_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hub.db"
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["users", "add", "ann", "--role", "admin", "--password-stdin", "--url", url]) == 0
    assert cli(["users", "set-role", "ann", "operator", "--url", url]) == 0
    assert cli(["tokens", "create", "ci", "--url", url]) == 0
    id_ = capsys.readouterr().out.strip().split("_")[1]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
        )
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["users", "add", "bob", "--password-stdin", "--url", url]) == 1
    assert cli(["users", "disable", "ann", "--url", url]) == 1
    assert cli(["tokens", "revoke", id_, "--url", url]) == 1
    assert "audit log could not be written" in capsys.readouterr().err

    async def state() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
        db = Database(url)
        try:
            auth = Auth(db)
            return await auth.users(), await auth.tokens(), await auth.audit_rows()
        finally:
            await db.close()

    users, tokens, log = asyncio.run(state())
    assert [(u["name"], u["role"], u["disabled"]) for u in users] == [("ann", "operator", False)]
    assert tokens[0]["revoked_at"] is None
    assert [r["action"] for r in log] == ["token create", "user set-role", "user add"]
    assert log[1]["before"]["role"] == "admin" and log[1]["after"]["role"] == "operator"
    assert log[0]["after"]["id"] == id_ and log[0]["after"]["token"] == "[redacted]"
    assert all(r["actor"].startswith("cli:") for r in log)


async def test_a_connection_no_enabled_route_uses_is_listed_idle_and_checked_on_demand(
    hubs: HubFactory, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_IDLE_CRM_TOKEN", raising=False)
    config = (
        config_text(sink.url).replace(
            "routes:",
            "  crm:\n    connector: http\n"
            f"    options: {{url: '{sink.url}', authorization: env:TEST_IDLE_CRM_TOKEN}}\nroutes:",
        )
        + "  - name: orders-to-crm\n    from: canonical.order\n    to: crm\n    enabled: false\n"
    )
    hub = await hubs.start(config=config, reload_interval_s=0)
    await add_users(hub)
    operator, csrf = await logged_in(hub, "operator")
    async with closing(operator):
        conns = {c["name"]: c for c in (await operator.get("/api/connections")).json()["items"]}
        assert conns["crm"]["idle"] is True and conns["erp"]["idle"] is False
        assert conns["crm"]["kinds"] == ["sink"] and conns["crm"]["outbound_routes"] == []
        assert conns["crm"]["options"]["authorization"] == "[secret]"
        # its secret is read for the check: missing, the check says where it is needed
        checked = await operator.post("/api/connections/crm/check", headers={"x-csrf-token": csrf})
        assert checked.status_code == 200 and checked.json()["ok"] is False, checked.text
        assert (
            "connections.crm.options.authorization: environment variable "
            in (checked.json()["message"])
        )
        assert "TEST_IDLE_CRM_TOKEN is not set" in checked.json()["message"]
        monkeypatch.setenv("TEST_IDLE_CRM_TOKEN", "Bearer idle-crm-token-0123")
        checked = await operator.post("/api/connections/crm/check", headers={"x-csrf-token": csrf})
        assert checked.json()["ok"] is True, checked.text
        assert "idle-crm-token" not in checked.text
    assert "crm" in hub.config.idle  # a check opens nothing for the routes
