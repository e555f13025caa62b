"""The embedded broker under `hub up`: a terminal's Ctrl-C, and Tansu's own death.

Each hub here runs `hub up` in a subprocess with its own embedded Tansu, as `make run` does."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import httpx
import pytest

from hub.broker import EmbeddedBroker, _write_atomically, free_port, tansu_binary

from .support.harness import (
    SECRET,
    HubFactory,
    RecordingSink,
    config_text,
    order_body,
    post,
    shopify_headers,
    until,
)

# Events wait in Kafka: the destination is down and its circuit open (the worker stops fetching).
WAITING = dict(
    retry="initial_delay: 50ms, max_delay: 200ms",
    limits="circuit_breaker: {failures: 2, open_for: 1h, max_open_for: 1h}",
)


class HubProcess:
    """`hub up` in ``state``, its output in ``state/hub.log``."""

    def __init__(self, state: Path, text: str, **env: str) -> None:
        (state / "hub.yaml").write_text(text)
        self.state = state
        self.log_path = state / "hub.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            "TEST_SHOPIFY_SECRET": SECRET,
            "HUB_STATE_DIR": str(state),
            "HUB_HTTP_PORT": str(self.port),
            "HUB_KAFKA_PARTITIONS": "1",
            "HUB_RELOAD_INTERVAL_S": "0",
            **env,
        }
        self.env.pop("HUB_KAFKA_BOOTSTRAP_SERVERS", None)  # its own embedded broker
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "hub.cli", "up", "-c", str(self.state / "hub.yaml")]
        with self.log_path.open("ab") as log:
            # Its own process group, as a shell starts a job: a terminal's Ctrl-C goes to it.
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, process_group=0
            )

    def lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def tansu_pid(self) -> int:
        return int(json.loads((self.state / "embedded-broker.json").read_text())["pid"])

    async def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
        try:
            return (await self.client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def webhook(self, order_id: int, webhook_id: str | None = None) -> httpx.Response:
        body = order_body(order_id, note="broker death")
        headers = shopify_headers(body, webhook_id)
        return await self.client.post("/webhooks/shop", content=body, headers=headers)

    async def accept(self, order_id: int, webhook_id: str | None = None) -> None:
        response = await self.webhook(order_id, webhook_id)
        assert response.status_code == 202, response.text

    async def circuit_open(self) -> bool:
        items = (await self.client.get("/api/destinations")).json()["items"]
        return [d["circuit"] for d in items] == ["open"]

    async def exited(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is not None


@asynccontextmanager
async def hub_up(state: Path, text: str, **env: str) -> AsyncIterator[HubProcess]:
    hub = HubProcess(state, text, **env)
    hub.start()
    assert hub.proc is not None
    try:
        await until(hub.ready)
        yield hub
    finally:
        await hub.client.aclose()
        if hub.proc.poll() is None:
            hub.proc.kill()
            await asyncio.to_thread(hub.proc.wait)
        orphan = EmbeddedBroker.left_behind(state / "embedded-broker.json")
        if orphan is not None and orphan.alive():
            await asyncio.to_thread(orphan.stop)  # never leave a broker behind


async def stored_receipt(state: Path, webhook_id: str) -> bool:
    def read() -> bool:
        with closing(sqlite3.connect(state / "hub.db")) as db:
            query = "SELECT 1 FROM webhook_receipts WHERE delivery_id = ?"
            return db.execute(query, (webhook_id,)).fetchone() is not None

    return await asyncio.to_thread(read)


def delivered(sink: RecordingSink) -> set[str]:
    return {r.body["external_refs"][0]["id"] for r in sink.received}


async def test_ctrl_c_in_a_terminal_keeps_what_the_embedded_broker_holds(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C is a SIGINT to the whole foreground process group: Tansu must not
    get it, so that the hub can save what it holds, then stop it."""
    sink.down = True
    text = config_text(sink.url, **WAITING)
    async with hub_up(tmp_path, text) as hub:
        await asyncio.gather(*(hub.accept(8400 + i) for i in range(10)))
        await until(hub.circuit_open)
        waiting = {str(8410 + i) for i in range(6)}  # 202: in Kafka, and nobody reads them
        await asyncio.gather(*(hub.accept(int(i)) for i in waiting))
        tansu = hub.tansu_pid()
        assert hub.proc is not None
        os.killpg(hub.proc.pid, signal.SIGINT)  # as the terminal does
        await until(hub.exited)
        output = hub.log_path.read_text()
        assert hub.proc.returncode == 0, output
        assert "hub stopped" in output
        assert "could not keep" not in output, output
        with pytest.raises(ProcessLookupError):  # the hub stopped its broker (and reaped it)
            os.kill(tansu, 0)
        assert not (tmp_path / "embedded-broker.json").exists()

    sink.down = False
    settings = hubs.settings(
        kafka_bootstrap_servers="", state_dir=tmp_path, kafka_topic_prefix="hub."
    )
    await hubs.start(config=text, settings=settings)

    async def kept() -> bool:
        return waiting <= delivered(sink)

    await until(kept)


async def test_a_retried_webhook_is_stored_again_when_the_broker_died_with_the_hub(
    hubs: HubFactory, sink: RecordingSink, tmp_path: Path
) -> None:
    """Hub and Tansu killed together (a power cut): the event accepted before is lost with the
    broker, and the next start must not answer the source's retry with `duplicate`."""
    sink.down = True
    text = config_text(sink.url, **WAITING)
    async with hub_up(tmp_path, text) as hub:
        await asyncio.gather(*(hub.accept(8500 + i) for i in range(10)))
        await until(hub.circuit_open)
        await hub.accept(8510, webhook_id="lost-with-the-broker")
        await until(lambda: stored_receipt(tmp_path, "lost-with-the-broker"))  # written behind
        tansu = hub.tansu_pid()
        assert hub.proc is not None
        hub.proc.kill()
        os.kill(tansu, signal.SIGKILL)
        await until(hub.exited)
    assert (tmp_path / "embedded-broker.json").exists()  # the broker it names is gone

    sink.down = False
    settings = hubs.settings(
        kafka_bootstrap_servers="", state_dir=tmp_path, kafka_topic_prefix="hub."
    )
    second = await hubs.start(config=text, settings=settings)
    body = order_body(8510, note="broker death")
    retried = await post(second, body, shopify_headers(body, "lost-with-the-broker"))
    assert retried.status_code == 202, retried.text

    async def arrived() -> bool:
        return "8510" in delivered(sink)

    await until(arrived)
    # A webhook whose event did get through is still a duplicate.
    again = await post(second, body, shopify_headers(body, "lost-with-the-broker"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text


async def test_the_hub_restarts_its_broker_when_it_dies(
    sink: RecordingSink, tmp_path: Path
) -> None:
    """Tansu killed under a running hub: it is started again, /readyz turns 200 by itself, the
    source's retry of the lost event is stored again and arrives, and new events flow."""
    sink.down = True
    async with hub_up(tmp_path, config_text(sink.url, **WAITING)) as hub:
        await asyncio.gather(*(hub.accept(8600 + i) for i in range(10)))
        await until(hub.circuit_open)
        await hub.accept(8610, webhook_id="lost-under-a-running-hub")
        await until(lambda: stored_receipt(tmp_path, "lost-under-a-running-hub"))
        tansu = hub.tansu_pid()
        before = len(hub.lines())
        os.kill(tansu, signal.SIGKILL)

        async def restarted() -> bool:
            return hub.tansu_pid() != tansu and await hub.ready()

        await until(restarted)
        sink.down = False
        retried = await hub.webhook(8610, webhook_id="lost-under-a-running-hub")
        assert retried.status_code == 202, retried.text
        await hub.accept(8611)

        async def arrived() -> bool:
            return {"8610", "8611"} <= delivered(sink)

        await until(arrived)
        outage = hub.lines()[before:]
        assert any("ended with code -9" in line for line in outage), "\n".join(outage)
        assert len(outage) < 100, "\n".join(outage)


async def test_a_broker_that_cannot_be_restarted_stops_the_hub_with_an_error(
    sink: RecordingSink, tmp_path: Path
) -> None:
    """Should Tansu not start again, `hub up` exits non-zero with a clear error (a supervisor
    restarts it) instead of running on without a broker; the Kafka clients' reconnection errors
    meanwhile are rate-limited (~165 lines a second before)."""
    broken = tmp_path / "broken"
    wrapper = tmp_path / "tansu"  # the real Tansu, until `broken` exists
    wrapper.write_text(f'#!/bin/sh\n[ -e "{broken}" ] && exit 3\nexec "{tansu_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    async with hub_up(tmp_path, config_text(sink.url), HUB_TANSU_BINARY=str(wrapper)) as hub:
        before = len(hub.lines())
        broken.touch()
        os.kill(hub.tansu_pid(), signal.SIGKILL)
        await until(hub.exited, timeout_s=120)
        assert hub.proc is not None
        outage = hub.lines()[before:]
        assert hub.proc.returncode == 1, "\n".join(outage)
        assert any(
            line.startswith("error: the embedded broker ended and could not be restarted")
            for line in outage
        ), "\n".join(outage)
        # Five attempts over ~15 s: thousands of lines at the old rate.
        assert len(outage) < 200, "\n".join(outage)


def test_the_embedded_broker_never_takes_a_port_the_hub_is_about_to_listen_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HTTP port a user or a test chose may still be free when the broker picks its own: the
    OS can hand that very port out again, and the hub's web server then fails to start."""
    handed_out = iter([44245, 44245, 44246])

    class Socket:  # what the OS answers to bind(("127.0.0.1", 0)), one port after the other
        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(handed_out)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr("hub.broker.socket.socket", Socket)
    broker = EmbeddedBroker(binary=Path("tansu"), avoid_ports=frozenset({44245}))
    assert broker.port == 44246


def test_the_broker_state_file_is_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted broker rewrites its state file while others read it (the next hub looking for
    an orphan): a write that fails half-way leaves the previous state readable, not an empty
    file that reads as "no broker was left behind"."""
    state = tmp_path / "embedded-broker.json"
    _write_atomically(state, json.dumps({"pid": 41, "host": "127.0.0.1", "port": 9092}))

    def disk_full(self: Path, text: str) -> int:
        with open(self, "w") as f:  # the truncation a plain write_text does first
            f.write(text[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        _write_atomically(state, json.dumps({"pid": 42, "host": "127.0.0.1", "port": 9093}))
    monkeypatch.undo()
    left = EmbeddedBroker.left_behind(state)
    assert left is not None and left.pid == 41
