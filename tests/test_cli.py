"""The ``hub`` command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

COMMANDS = [
    [],
    ["up"],
    ["check"],
    ["mappings"],
    ["mappings", "check"],
    ["mappings", "test"],
    ["schemas"],
    ["schemas", "export"],
    ["schemas", "check"],
    ["connectors"],
    ["db"],
    ["db", "current"],
    ["db", "upgrade"],
    ["mdm"],
    ["mdm", "alias-legacy-ids"],
]


def hub(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hub")
def test_every_command_has_help(command: list[str]) -> None:
    result = hub(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hub")
    assert result.stderr == ""


def test_top_level_help_lists_the_commands() -> None:
    out = hub("--help").stdout
    for name in ("up", "check", "mappings", "schemas", "connectors", "db"):
        assert name in out


def test_version() -> None:
    result = hub("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("hub ")


def test_no_command_prints_help_and_fails() -> None:
    result = hub()
    assert result.returncode == 2
    assert "usage: hub" in result.stdout


def test_check_refuses_a_bad_config_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        "mappings: " + str(REPO / "mappings") + "\n"
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: plain-text\n"
        "  erp: {connector: ftp}\n"
    )
    result = hub("check", "-c", str(config))
    assert result.returncode == 2
    assert "configuration refused (2 problem(s)):" in result.stderr
    assert f"{config}:6 at connections.shop.options.webhook_secret: " in result.stderr
    assert "must not be written inline" in result.stderr
    assert f"{config}:7 at connections.erp.connector: unknown connector 'ftp'" in result.stderr
    assert "plain-text" not in result.stderr + result.stdout


def test_check_refuses_a_route_to_a_missing_mapping(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"mappings: {REPO / 'mappings'}\n"
        "connections:\n"
        "  shop: {connector: shopify, options: {webhook_secret: env:TEST_CLI_SECRET}}\n"
        "routes:\n"
        "  - name: in\n"
        "    from: shop\n"
        "    mapping: shopify/orders_update\n"
    )
    result = hub("check", "--config", str(config), TEST_CLI_SECRET="test-cli-webhook-secret")
    assert result.returncode == 2
    assert f"{config}:7 at routes[0].mapping: no mapping 'shopify/orders_update'" in result.stderr


def test_check_accepts_the_example_config() -> None:
    result = hub(
        "check",
        "-c",
        "examples/hub.yaml",
        SHOPIFY_WEBHOOK_SECRET="demo-webhook-secret",
        ERP_AUTHORIZATION="Bearer demo-erp-token",
    )
    assert result.returncode == 0, result.stderr
    assert "examples/hub.yaml: ok" in result.stdout
    assert "route shop-orders-in: shop -> shopify/orders_create" in result.stdout
    assert "route orders-to-outbox: canonical.order -> outbox" in result.stdout


def test_mappings_check() -> None:
    result = hub("mappings", "check")
    assert result.returncode == 0, result.stderr
    assert "ok  shopify/orders_create  (canonical order, version " in result.stdout
    assert "ok  shopify/address  (fragment, version " in result.stdout
    assert (
        "ok  generic/order_to_erp  (outbound: canonical order -> erp-order, version "
        in result.stdout
    )


def test_mappings_check_refuses_a_bad_mapping(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("target: {format: x}\nfields:\n  a: nope(b)\n")
    result = hub("mappings", "check", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:3 at fields.a: unknown function nope()" in result.stderr


def test_mappings_test_passes() -> None:
    result = hub("mappings", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  shopify/orders_create: " in result.stdout
    assert result.stdout.rstrip().endswith("passed, 0 failed")


def test_mappings_test_with_a_failing_case_shows_a_diff(tmp_path: Path) -> None:
    cases = tmp_path / "address.yaml"
    cases.write_text(
        "mapping: shopify/address\n"
        "cases:\n"
        "  - name: good\n"
        "    input: {city: Berlin}\n"
        "    expect: {city: Berlin}\n"
        "  - name: wrong city\n"
        "    input: {city: Berlin}\n"
        "    expect: {city: Bonn}\n"
    )
    result = hub("mappings", "test", str(cases))
    assert result.returncode == 1
    out = result.stdout
    assert "PASS  shopify/address: good" in out
    assert "FAIL  shopify/address: wrong city" in out
    assert "--- expected" in out and "+++ actual" in out
    assert '-  "city": "Bonn"' in out
    assert '+  "city": "Berlin"' in out
    assert "1 passed, 1 failed" in out


def test_mappings_test_without_cases_fails(tmp_path: Path) -> None:
    result = hub("mappings", "test", str(tmp_path))
    assert result.returncode == 1
    assert "0 passed, 0 failed" in result.stdout
    assert "no test cases found" in result.stderr


def test_schemas_check_passes_on_the_committed_schemas() -> None:
    result = hub("schemas", "check")
    assert result.returncode == 0, result.stderr
    assert "schemas are up to date" in result.stdout


def test_schemas_export_then_check_and_detect_drift(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = hub("schemas", "export", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "order.json").exists()
    assert hub("schemas", "check", str(out)).returncode == 0
    (out / "order.json").write_text("{}\n")
    result = hub("schemas", "check", str(out))
    assert result.returncode == 1
    assert "out of date: " in result.stderr
    assert "order" in result.stderr
    assert "hub schemas export" in result.stderr


def test_connectors_lists_connectors_and_options() -> None:
    result = hub("connectors")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "shopify: Shopify" in out
    assert "    webhook_secret (secret: env:NAME or file:PATH, required): The app's" in out
    assert "    shop_domain (text, optional): If set, " in out
    assert "http: HTTP endpoint" in out
    assert (
        '    method ("POST" or "PUT", default "POST"): HTTP method of each request (of a create, '
        "with update_path)." in out
    )
    assert "    timeout_s (number, default 10.0): Timeout of one request." in out
    assert "    headers (mapping of text to text, default {}): Extra, non-secret headers." in out
    assert "    url (URL, required): Where events are sent." in out
    assert "file: JSON Lines file" in out
    assert "PydanticUndefined" not in out


def test_every_connector_option_has_a_description() -> None:
    import connectors

    for name in connectors.names():
        cls = connectors.get(name)
        assert cls is not None
        for option, f in cls.Options.model_fields.items():
            assert f.description, f"{name}.{option} has no description"


def test_connectors_check_reaches_each_connection_and_says_what_failed(tmp_path: Path) -> None:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"""
connections:
  shop:
    connector: shopify
    options: {{webhook_secret: env:CHECK_SECRET}}
  outbox:
    connector: file
    options: {{path: out/orders.jsonl}}
  stuck:
    connector: file
    options: {{path: a-file/orders.jsonl}}
  erp:
    connector: http
    options: {{url: "http://127.0.0.1:{port}/orders", authorization: env:CHECK_SECRET}}
"""
    )
    secret = "check-secret-0123456789"
    all_of_them = hub("connectors", "check", "-c", str(config), CHECK_SECRET=secret)
    assert all_of_them.returncode == 1, all_of_them.stderr
    lines = all_of_them.stdout.splitlines()
    assert lines[0].startswith("ok    shop (shopify): ")
    assert lines[1] == f"ok    outbox (file): {tmp_path / 'out' / 'orders.jsonl'} can be written"
    assert lines[2].startswith("FAIL  stuck (file): cannot create the folder")
    assert lines[3].startswith(
        f"FAIL  erp (http): http://127.0.0.1:{port}/orders cannot be reached"
    )
    assert "check the URL" in lines[3]
    assert secret not in all_of_them.stdout + all_of_them.stderr

    some = hub("connectors", "check", "shop", "outbox", "-c", str(config), CHECK_SECRET=secret)
    assert some.returncode == 0 and len(some.stdout.splitlines()) == 2, some.stdout

    unknown = hub("connectors", "check", "nope", "-c", str(config), CHECK_SECRET=secret)
    assert unknown.returncode == 2
    assert "no connection named nope (known: shop, outbox, stuck, erp)" in unknown.stderr

    # Their routes all off (idle): one whose secret is not set is said so, not checked; named,
    # its secrets are read as a route using it would, and must be there.
    idle = tmp_path / "idle.yaml"
    idle.write_text(
        config.read_text()
        + "routes:\n"
        + "".join(
            f"  - {{name: to-{n}, from: canonical.order, to: {n}, enabled: false}}\n"
            for n in ("outbox", "stuck", "erp")
        )
        + "  - {name: in, from: shop, mapping: shopify/orders_create, enabled: false}\n"
    )
    unset = hub("connectors", "check", "-c", str(idle)).stdout.splitlines()
    assert unset[0] == (
        "idle  shop (shopify): no enabled route uses it; not checked: environment variable "
        "CHECK_SECRET is not set"
    )
    assert [line[:12] for line in unset[1:]] == ["ok    outbox", "FAIL  stuck ", "idle  erp (h"]
    named = hub("connectors", "check", "erp", "-c", str(idle))
    assert named.returncode == 2
    assert (
        f"{idle}:14 at connections.erp.options.authorization: environment variable "
        "CHECK_SECRET is not set"
    ) in named.stderr
