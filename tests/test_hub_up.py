"""`hub up` as a user runs it: embedded broker, demo config, a signed order, SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from connectors.shopify import sign
from hub import migrations
from hub.broker import free_port

from .support.harness import ROOT

EXAMPLE_ORDER = ROOT / "examples" / "shopify-order.json"


def test_hub_up_with_the_demo_config_delivers_an_order_and_stops_cleanly(tmp_path: Path) -> None:
    # The demo config writes to ../.hub/outbox relative to examples/: run a copy in tmp_path.
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "hub.yaml", tmp_path / "examples" / "hub.yaml")
    (tmp_path / "mappings").symlink_to(ROOT / "mappings")
    port = free_port()
    # A user's own webhook secret, and no ERP_AUTHORIZATION: the demo's `erp` route is off, so
    # the secret of its connection is not needed (README, "Try it").
    secret = "a-users-own-shopify-secret"
    env = {
        **{k: v for k, v in os.environ.items() if k != "ERP_AUTHORIZATION"},
        "SHOPIFY_WEBHOOK_SECRET": secret,
        "HUB_HTTP_PORT": str(port),
        "HUB_STATE_DIR": str(tmp_path / "state"),
        "HUB_KAFKA_BOOTSTRAP_SERVERS": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "up", "--config", "examples/hub.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until(lambda: _get(f"{base}/readyz") == 200, proc)
        body = EXAMPLE_ORDER.read_bytes()
        response = httpx.post(
            f"{base}/webhooks/shop",
            content=body,
            headers={
                "content-type": "application/json",
                "x-shopify-topic": "orders/create",
                "x-shopify-hmac-sha256": sign(secret, body),
                "x-shopify-webhook-id": "readme-1",
            },
        )
        assert response.status_code == 202, response.text
        outbox = tmp_path / ".hub" / "outbox" / "orders.jsonl"
        _wait_until(lambda: outbox.exists() and outbox.read_text().strip() != "", proc)
        line = json.loads(outbox.read_text().splitlines()[0])
        assert line["data"]["number"] == "#9999"
        assert line["correlationid"] == response.json()["id"]

        tansu = _children_named(proc.pid, "tansu")
        assert tansu, "hub up should have started the embedded broker"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 0, output
        assert "hub stopped" in output
        assert "3 connection(s) (1 idle)" in output
        # the schema made once, said once: alembic's own INFO lines stay out of the log
        assert output.count(f"database schema created at {migrations.head()}") == 1, output
        assert "alembic" not in output, output
        assert not any(Path(f"/proc/{pid}").exists() for pid in tansu), "broker left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hub_up_refuses_a_bad_config_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        "connections:\n  shop:\n    connector: shopify\n"
        "    options:\n      webhook_secret: s3cr3t\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "up", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:5 at connections.shop.options.webhook_secret" in result.stderr
    assert "must not be written inline" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _wait_until(check, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(
                f"hub up exited early:\n{proc.stdout.read().decode() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError("hub up did not get there in time")
        time.sleep(0.1)


def _children_named(pid: int, name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), name], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
