"""hub.yaml: a valid file loads; every bad one is refused with file, line and path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.file import File
from connectors.http import Http
from connectors.shopify import Shopify
from hub.config import check_routes, load_config
from hub.errors import ConfigError
from hub.mapping import load_mappings
from hub.settings import Settings

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"

VALID = """\
mappings: ../mappings
connections:
  shop:
    connector: shopify
    options:
      webhook_secret: env:TEST_SHOP_SECRET
      shop_domain: acme.myshopify.com
  erp:
    connector: http
    options:
      url: http://127.0.0.1:9000/orders
      authorization: env:TEST_ERP_AUTH
  outbox:
    connector: file
    options: {path: out/orders.jsonl}
routes:
  - name: shop-orders-in
    from: shop
    mapping: shopify/orders_create
  - name: orders-to-erp
    from: canonical.order
    to: erp
  - name: orders-to-outbox
    from: canonical.order
    to: outbox
    enabled: false
"""


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SHOP_SECRET", "test-shop-webhook-secret")
    monkeypatch.setenv("TEST_ERP_AUTH", "Bearer erp-token")


# An enabled route that uses `shop`: its name is in the errors of the connection's secrets.
SHOP_IN = "routes:\n  - {name: in, from: shop, mapping: shopify/orders_create}\n"


def refused(path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, text=text)
    return info.value


def test_valid_config_loads(tmp_path: Path, secrets: None) -> None:
    config = load_config(tmp_path / "hub.yaml", text=VALID)

    assert set(config.connections) == {"shop", "erp"}
    assert set(config.idle) == {"outbox"}  # its only route is disabled
    shop = config.connections["shop"]
    assert isinstance(shop, Shopify)
    assert shop.options.webhook_secret.get_secret_value() == "test-shop-webhook-secret"
    erp = config.connections["erp"]
    assert isinstance(erp, Http)
    assert erp.options.authorization is not None
    assert erp.options.authorization.get_secret_value() == "Bearer erp-token"
    outbox = config.idle["outbox"]
    assert outbox.connector is File
    assert outbox.options.path == tmp_path.resolve() / "out" / "orders.jsonl"  # type: ignore[attr-defined]

    assert config.mappings_dir == (tmp_path / ".." / "mappings").resolve()
    assert [(r.name, r.connection, r.mapping) for r in config.inbound] == [
        ("shop-orders-in", "shop", "shopify/orders_create")
    ]
    assert [(r.name, r.entity, r.destination, r.enabled) for r in config.outbound] == [
        ("orders-to-erp", "order", "erp", True),
        ("orders-to-outbox", "order", "outbox", False),
    ]
    assert config.webhook_source("shop") is shop
    assert config.webhook_source("erp") is None
    assert set(config.sinks()) == {"erp"}
    assert [r.name for r in config.inbound_for("shop")] == ["shop-orders-in"]
    # a disabled route is kept but not used
    assert config.outbound_for("outbox") == []
    assert [r.name for r in config.outbound_for("erp")] == ["orders-to-erp"]


def test_a_connection_names_its_system_by_default_its_connector(
    tmp_path: Path, secrets: None
) -> None:
    text = VALID.replace("    connector: http\n", "    connector: http\n    system: tryton\n")
    text = text.replace("    to: erp\n", "    to: erp\n    skip_origin: true\n")
    config = load_config(tmp_path / "hub.yaml", text=text)
    assert {n: c.system for n, c in config.connections.items()} == {
        "shop": "shopify",
        "erp": "tryton",
    }
    assert config.system_of("erp") == "tryton" and config.system_of("nope") is None
    assert [(r.name, r.skip_origin) for r in config.outbound] == [
        ("orders-to-erp", True),
        ("orders-to-outbox", False),
    ]
    # the system is part of what a reload compares
    plain = load_config(tmp_path / "hub.yaml", text=VALID).connections["erp"]
    assert plain.fingerprint() != config.connections["erp"].fingerprint()


def test_a_bad_system_and_skip_origin_on_an_inbound_route_are_refused(
    tmp_path: Path, secrets: None
) -> None:
    text = VALID.replace("    connector: http\n", "    connector: http\n    system: Tryton ERP\n")
    text = text.replace(
        "    mapping: shopify/orders_create\n",
        "    mapping: shopify/orders_create\n    skip_origin: true\n",
    )
    error = refused(tmp_path / "hub.yaml", text)
    assert [p.path for p in error.problems] == ["connections.erp.system"]
    text = VALID.replace(
        "    mapping: shopify/orders_create\n",
        "    mapping: shopify/orders_create\n    skip_origin: true\n",
    )
    error = refused(tmp_path / "hub.yaml", text)
    assert [p.path for p in error.problems] == ["routes[0].skip_origin"]
    assert "for routes to a destination" in error.problems[0].message
    text = VALID.replace(
        "    mapping: shopify/orders_create\n",
        "    mapping: shopify/orders_create\n    drop_echoes: true\n",
    )
    error = refused(tmp_path / "hub.yaml", text)
    assert [p.path for p in error.problems] == ["routes[0].drop_echoes"]
    text = VALID.replace(
        "    mapping: shopify/orders_create\n",
        "    mapping: shopify/orders_create\n    last_writer_wins: true\n",
    )
    error = refused(tmp_path / "hub.yaml", text)
    assert [p.path for p in error.problems] == ["routes[0].last_writer_wins"]


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config(tmp_path / "hub.yaml", text="")
    assert config.connections == {}
    assert config.inbound == [] and config.outbound == []


def test_unknown_connector_names_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n  shop:\n    connector: shopifi\n",
    )
    assert len(err.problems) == 1
    problem = err.problems[0]
    assert problem.line == 3
    assert problem.path == "connections.shop.connector"
    assert f"{path}:3 at connections.shop.connector: unknown connector 'shopifi'" in str(err)
    assert "known: bottlecrm, file, http, shopify" in str(err)


def test_unknown_option_key(tmp_path: Path, secrets: None) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:TEST_SHOP_SECRET\n"
        "      webhook_secrte: env:TEST_SHOP_SECRET\n",
    )
    assert str(err) == f"{path}:6 at connections.shop.options.webhook_secrte: unknown key"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(path, "connections: {}\nroutse: []\n")
    assert str(err) == f"{path}:2 at routse: unknown key"


def test_inline_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: hunter2\n",
    )
    text = str(err)
    assert text.startswith(f"{path}:5 at connections.shop.options.webhook_secret: ")
    assert "must not be written inline" in text
    # the refused value itself is not echoed back
    assert "hunter2" not in text


def test_missing_env_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_NOT_SET_SECRET", raising=False)
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:TEST_NOT_SET_SECRET\n" + SHOP_IN,
    )
    assert str(err) == (
        f"{path}:5 at connections.shop.options.webhook_secret: "
        "environment variable TEST_NOT_SET_SECRET is not set "
        "(route 'in' needs it: set it, or disable that route)"
    )


def test_file_secret_is_read_relative_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "shop").write_text("secret-read-from-a-file\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    config = load_config(
        tmp_path / "hub.yaml",
        text="connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options: {webhook_secret: 'file:secrets/shop'}\n",
    )
    shop = config.connections["shop"]
    assert isinstance(shop, Shopify)
    assert shop.options.webhook_secret.get_secret_value() == "secret-read-from-a-file"


def test_missing_file_secret(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options: {webhook_secret: 'file:secrets/absent'}\n",
    )
    assert str(err).startswith(f"{path}:4 at connections.shop.options.webhook_secret: ")
    assert "cannot read secret file" in str(err)
    assert str(tmp_path / "secrets" / "absent") in str(err)


@pytest.mark.parametrize("value", ["", "s3cret!"], ids=["empty", "7 bytes"])
def test_an_empty_or_very_short_env_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An empty key signs anything anyone sends (issue 11, point 8); a short one is guessed."""
    monkeypatch.setenv("TEST_SHORT_SECRET", value)
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:TEST_SHORT_SECRET\n",
    )
    (problem,) = err.problems
    assert str(problem).startswith(f"{path}:5 at connections.shop.options.webhook_secret: ")
    expected = "is empty" if not value else "is shorter than 8 bytes"
    assert f"the secret env:TEST_SHORT_SECRET {expected}" in str(problem)
    if value:
        assert value not in str(err)


@pytest.mark.parametrize(
    ("value", "warned"),
    [("é" * 4, True), ("hub-demo-secret", True), ("é" * 8, False)],
    ids=["8 bytes", "15 bytes", "16 bytes"],
)
def test_a_secret_of_8_bytes_or_more_is_accepted_and_under_16_with_a_warning(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    value: str,
    warned: bool,
) -> None:
    """The sending system chooses a webhook secret, and a legacy one may not be changeable: a
    short one is used, with a warning that names the reference and never the value."""
    monkeypatch.setenv("TEST_SHORT_SECRET", value)  # "é" is 2 bytes in UTF-8
    with caplog.at_level(logging.WARNING, logger="connectors.base"):
        config = load_config(
            tmp_path / "hub.yaml",
            text="connections:\n"
            "  shop: {connector: shopify, options: {webhook_secret: env:TEST_SHORT_SECRET}}\n",
        )
    shop = config.connections["shop"]
    assert isinstance(shop, Shopify)
    assert shop.options.webhook_secret.get_secret_value() == value
    warnings = [r.getMessage() for r in caplog.records if r.name == "connectors.base"]
    if warned:
        (warning,) = warnings
        size = len(value.encode())
        assert warning.startswith(
            f"the secret env:TEST_SHORT_SECRET is {size} bytes, shorter than the 16 advised"
        )
        assert value not in warning
    else:
        assert warnings == []


def test_every_secret_option_of_every_connector_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "blank").write_text("  \n")  # a file secret is stripped: nothing is left
    (tmp_path / "short").write_text("zq7\n")
    monkeypatch.setenv("TEST_SHOP_SECRET", "a-long-enough-shopify-secret")
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop:\n"
        "    connector: shopify\n"
        "    options:\n"
        "      webhook_secret: env:TEST_SHOP_SECRET\n"
        "      previous_webhook_secret: file:blank\n"
        "  erp:\n"
        "    connector: http\n"
        "    options:\n"
        "      url: https://erp.example/orders\n"
        "      authorization: file:short\n",
    )
    assert [str(p) for p in err.problems] == [
        f"{path}:6 at connections.shop.options.previous_webhook_secret: "
        "the secret file:blank is empty: set it to the system's secret",
        f"{path}:11 at connections.erp.options.authorization: "
        "the secret file:short is shorter than 8 bytes, which is too easy to guess: use the "
        "system's own secret (e.g. a Shopify app's client secret), or generate one with "
        "`python -c 'import secrets; print(secrets.token_hex(32))'` or `openssl rand -hex 32` "
        "and give the system the same value",
    ]
    assert "zq7" not in str(err)


IDLE_ERP = """\
connections:
  outbox: {connector: file, options: {path: out/orders.jsonl}}
  erp:
    connector: http
    options:
      url: http://127.0.0.1:9000/orders
      authorization: env:TEST_IDLE_ERP_AUTH
routes:
  - name: orders-to-outbox
    from: canonical.order
    to: outbox
  - name: orders-to-erp
    from: canonical.order
    to: erp
    enabled: false
"""


def test_the_secrets_of_a_connection_whose_routes_are_all_disabled_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's `erp`: its route is off, so its secret need not be set; enabling the route
    reads it, and refuses the file while it is missing, naming the option's line and the
    route."""
    monkeypatch.delenv("TEST_IDLE_ERP_AUTH", raising=False)
    path = tmp_path / "hub.yaml"
    config = load_config(path, text=IDLE_ERP)
    assert set(config.connections) == {"outbox"}
    idle = config.idle["erp"]
    assert idle.connector is Http and set(config.sinks()) == {"outbox"}
    assert config.outbound_for("erp") == []

    enabled = IDLE_ERP.replace("    enabled: false\n", "")
    err = refused(path, enabled)
    assert [str(p) for p in err.problems] == [
        f"{path}:7 at connections.erp.options.authorization: environment variable "
        "TEST_IDLE_ERP_AUTH is not set (route 'orders-to-erp' needs it: set it, or disable "
        "that route)"
    ]
    # asked for outside the routes (a check before enabling): read then, refused the same way
    with pytest.raises(ConfigError, match=r"hub.yaml:7 at connections.erp.options.authorization"):
        idle.open()

    monkeypatch.setenv("TEST_IDLE_ERP_AUTH", "Bearer idle-erp-token")
    erp = load_config(path, text=enabled).connections["erp"]
    assert isinstance(erp, Http) and erp.options.authorization is not None
    assert erp.options.authorization.get_secret_value() == "Bearer idle-erp-token"
    opened = idle.open()
    assert isinstance(opened, Http) and opened.options.authorization is not None
    assert opened.options.authorization.get_secret_value() == "Bearer idle-erp-token"
    assert set(load_config(path, text=IDLE_ERP, activate=frozenset({"erp"})).connections) == {
        "outbox",
        "erp",
    }
    # a connection no route names is in use, as ever (its webhooks received, polled, checked)
    shop = "  shop: {connector: shopify, options: {webhook_secret: env:TEST_IDLE_ERP_AUTH}}\n"
    with_shop = IDLE_ERP.replace("connections:\n", "connections:\n" + shop, 1)
    assert set(load_config(path, text=with_shop).connections) == {"outbox", "shop"}
    monkeypatch.delenv("TEST_IDLE_ERP_AUTH")
    assert [p.path for p in refused(path, with_shop).problems] == [
        "connections.shop.options.webhook_secret"
    ]


def test_an_idle_connection_is_still_checked_but_for_its_secrets_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_IDLE_ERP_AUTH", "short")  # too short, but not read: no problem
    path = tmp_path / "hub.yaml"
    assert "erp" in load_config(path, text=IDLE_ERP).idle
    err = refused(
        path,
        IDLE_ERP.replace("env:TEST_IDLE_ERP_AUTH", "hunter2-inline-token").replace(
            "url: http://", "url: ftp://"
        ),
    )
    assert [p.path for p in err.problems] == [
        "connections.erp.options.url",
        "connections.erp.options.authorization",
    ]
    assert "must not be written inline" in str(err) and "hunter2" not in str(err)
    # a disabled route to an idle connection is checked as any other: a shop receives nothing
    shop = "  shop: {connector: shopify, options: {webhook_secret: env:TEST_UNSET_SECRET}}\n"
    back = "  - {name: back, from: canonical.order, to: shop, enabled: false}\n"
    err = refused(path, IDLE_ERP.replace("connections:\n", "connections:\n" + shop, 1) + back)
    assert [str(p) for p in err.problems] == [
        f"{path}:17 at routes[2].to: connection 'shop' cannot receive events"
    ]


def test_hub_check_refuses_an_empty_secret(tmp_path: Path) -> None:
    """``hub check`` (and ``hub up``, and a reload: they all load the file the same way)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "check", "-c", "examples/hub.yaml"],
        cwd=MAPPINGS.parent,
        env={**env, "SHOPIFY_WEBHOOK_SECRET": "", "ERP_AUTHORIZATION": "Bearer hub-demo-erp-token"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "configuration refused (1 problem(s)):" in result.stderr
    assert (
        "examples/hub.yaml:11 at connections.shop.options.webhook_secret: "
        "the secret env:SHOPIFY_WEBHOOK_SECRET is empty"
    ) in result.stderr
    assert ": ok" not in result.stdout


def test_hub_check_the_demo_with_a_short_webhook_secret_and_no_erp_secret() -> None:
    """What a user's own first try did: a webhook secret of 14 bytes (used, with a warning and
    how to make a longer one) and no ERP_AUTHORIZATION (not needed: the `erp` route is off).
    A secret of a few bytes is refused."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HUB_") and k not in ("SHOPIFY_WEBHOOK_SECRET", "ERP_AUTHORIZATION")
    }

    def check(secret: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", "check", "-c", "examples/hub.yaml"],
            cwd=MAPPINGS.parent,
            env={**env, "SHOPIFY_WEBHOOK_SECRET": secret},
            capture_output=True,
            text=True,
            timeout=60,
        )

    short = check("my-shop-secret")
    assert short.returncode == 0, short.stdout + short.stderr
    assert "examples/hub.yaml: ok" in short.stdout
    assert (
        "WARNING: the secret env:SHOPIFY_WEBHOOK_SECRET is 14 bytes, shorter than the 16 advised"
    ) in short.stderr
    assert "openssl rand -hex 32" in short.stderr and "secrets.token_hex(32)" in short.stderr
    assert "my-shop-secret" not in short.stderr + short.stdout
    assert "  idle (no enabled route uses them; their secrets are read when one does): erp" in (
        short.stdout
    )

    tiny = check("shop")
    assert tiny.returncode == 2, tiny.stdout + tiny.stderr
    assert "configuration refused (1 problem(s)):" in tiny.stderr
    assert (
        "examples/hub.yaml:11 at connections.shop.options.webhook_secret: the secret "
        "env:SHOPIFY_WEBHOOK_SECRET is shorter than 8 bytes"
    ) in tiny.stderr

    ok = check("my-own-shop-secret-0123456789")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "WARNING" not in ok.stderr


def test_unknown_connection_in_route(tmp_path: Path, secrets: None) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop: {connector: shopify, options: {webhook_secret: env:TEST_SHOP_SECRET}}\n"
        "routes:\n"
        "  - name: in\n"
        "    from: shopp\n"
        "    mapping: shopify/orders_create\n"
        "  - name: out\n"
        "    from: canonical.order\n"
        "    to: erp\n",
    )
    assert [str(p) for p in err.problems] == [
        f"{path}:5 at routes[0].from: unknown connection 'shopp' "
        "(use a connection name or canonical.<entity>)",
        f"{path}:9 at routes[1].to: unknown connection 'erp'",
    ]


def test_unknown_canonical_entity(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  outbox: {connector: file, options: {path: x.jsonl}}\n"
        "routes:\n"
        "  - name: out\n"
        "    from: canonical.orders\n"
        "    to: outbox\n",
    )
    assert str(err) == (
        f"{path}:5 at routes[0].from: unknown entity 'orders' "
        "(known: customer, product, order, inventory)"
    )


def test_duplicate_route_names(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  outbox: {connector: file, options: {path: x.jsonl}}\n"
        "routes:\n"
        "  - name: out\n"
        "    from: canonical.order\n"
        "    to: outbox\n"
        "  - name: out\n"
        "    from: canonical.customer\n"
        "    to: outbox\n",
    )
    assert str(err) == f"{path}:7 at routes[1].name: route name 'out' used twice"


def test_a_sink_cannot_be_a_source_and_a_source_not_a_destination(
    tmp_path: Path, secrets: None
) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(
        path,
        "connections:\n"
        "  shop: {connector: shopify, options: {webhook_secret: env:TEST_SHOP_SECRET}}\n"
        "  outbox: {connector: file, options: {path: x.jsonl}}\n"
        "routes:\n"
        "  - name: in\n"
        "    from: outbox\n"
        "    mapping: shopify/orders_create\n"
        "  - name: out\n"
        "    from: canonical.order\n"
        "    to: shop\n",
    )
    assert [str(p) for p in err.problems] == [
        f"{path}:6 at routes[0].from: connection 'outbox' is not a source",
        f"{path}:10 at routes[1].to: connection 'shop' cannot receive events",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    err = refused(
        tmp_path / "hub.yaml",
        "connections:\n"
        "  a: {connector: nope}\n"
        "  b: {connector: shopify, options: {webhook_secret: plain}}\n"
        "routes:\n"
        "  - {name: r, from: canonical.nothing, to: a}\n",
    )
    assert [(p.line, p.path) for p in err.problems] == [
        (2, "connections.a.connector"),
        (3, "connections.b.options.webhook_secret"),
        (5, "routes[0].from"),
    ]


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(path, "connections:\n  shop:\n    connector: [shopify\n  erp: {}\n")
    assert len(err.problems) == 1
    assert err.problems[0].line == 4
    assert str(err).startswith(f"{path}:4: invalid YAML: ")


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    err = refused(path, "- just\n- a list\n")
    assert str(err) == f"{path}:1: must be a mapping with connections and routes"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")


# -- check_routes: the routes against the mappings --------------------------------------------


def _config_with_inbound(tmp_path: Path, mapping: str) -> tuple[Path, str]:
    path = tmp_path / "hub.yaml"
    text = (
        "connections:\n"
        "  shop: {connector: shopify, options: {webhook_secret: env:TEST_SHOP_SECRET}}\n"
        "  outbox: {connector: file, options: {path: x.jsonl}}\n"
        "routes:\n"
        "  - name: out\n"
        "    from: canonical.order\n"
        "    to: outbox\n"
        "  - name: in\n"
        "    from: shop\n"
        f"    mapping: {mapping}\n"
    )
    return path, text


def test_check_routes_accepts_existing_entity_mapping(tmp_path: Path, secrets: None) -> None:
    path, text = _config_with_inbound(tmp_path, "shopify/orders_create")
    check_routes(load_config(path, text=text), load_mappings(MAPPINGS))


def test_check_routes_refuses_a_missing_mapping(tmp_path: Path, secrets: None) -> None:
    path, text = _config_with_inbound(tmp_path, "shopify/orders_created")
    config = load_config(path, text=text)
    with pytest.raises(ConfigError) as info:
        check_routes(config, load_mappings(MAPPINGS))
    assert str(info.value) == (
        f"{path}:10 at routes[1].mapping: no mapping 'shopify/orders_created' in {MAPPINGS}"
    )


def test_check_routes_refuses_a_fragment_as_inbound_mapping(tmp_path: Path, secrets: None) -> None:
    path, text = _config_with_inbound(tmp_path, "shopify/address")
    config = load_config(path, text=text)
    with pytest.raises(ConfigError) as info:
        check_routes(config, load_mappings(MAPPINGS))
    assert str(info.value) == (
        f"{path}:10 at routes[1].mapping: "
        "mapping 'shopify/address' does not produce a canonical entity"
    )


def test_check_routes_refuses_a_missing_outbound_mapping(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    text = (
        "connections:\n"
        "  outbox: {connector: file, options: {path: x.jsonl}}\n"
        "routes:\n"
        "  - name: out\n"
        "    from: canonical.order\n"
        "    to: outbox\n"
        "    mapping: erp/order\n"
    )
    with pytest.raises(ConfigError) as info:
        check_routes(load_config(path, text=text), load_mappings(MAPPINGS))
    assert str(info.value) == f"{path}:7 at routes[0].mapping: no mapping 'erp/order' in {MAPPINGS}"


# -- Settings ----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No HUB_* variables and no .env file in the working directory."""
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_empty_sasl_mechanism_is_none(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA_SASL_MECHANISM", "")
    assert Settings().kafka_sasl_mechanism is None
    monkeypatch.setenv("HUB_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    assert Settings().kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_unknown_sasl_mechanism_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("HUB_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValidationError):
        Settings()


def test_default_database_is_sqlite_in_state_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().database_url == "sqlite+aiosqlite:///.hub/hub.db"
    monkeypatch.setenv("HUB_STATE_DIR", str(clean_env / "state"))
    assert Settings().database_url == f"sqlite+aiosqlite:///{clean_env / 'state' / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    assert Settings().database_url == "postgresql+asyncpg://u@h/db"


def test_settings_read_the_env_file(clean_env: Path) -> None:
    (clean_env / ".env").write_text("HUB_KAFKA_TOPIC_PREFIX=acme.\n")
    settings = Settings()
    assert settings.ingest_topic == "acme.ingest"
    assert settings.canonical_topic("order") == "acme.canonical.order"
    assert settings.embedded_broker
