"""README.md's "Try it", run as written: its shell blocks, in order, against a real `make run`.

The blocks run in a copy of the demo files (examples/, with mappings/, the Makefile and the
virtualenv linked), so the outbox and the state folder are the test's own. Two things differ
from a user's machine, through the variables the README itself names: HUB_HTTP_PORT and
DEMO_ERP_PORT are free ports (the erp URL in the copied hub.yaml is changed to match, as the
README says to), and make is told not to install (MAKEFLAGS=STAMP=): the virtualenv is the one
running this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors import idempotency_key_for
from hub.broker import free_port

from .support.harness import ROOT

README = ROOT / "README.md"
DEMO_SECRETS = ("SHOPIFY_WEBHOOK_SECRET", "ERP_AUTHORIZATION")


def section(text: str, title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


class Background:
    """A long-running README command (`make run`, `make demo-erp`) in its own session."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "-ec", command],
            cwd=cwd,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, check: Callable[[str], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not check(self.output()):
            if self.proc.poll() is not None:
                raise AssertionError(f"exited before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


class Terminal:
    """The README's second terminal: each block runs in bash, with what earlier blocks set
    (``set -a`` exports every assignment; the state is kept in a file between blocks)."""

    def __init__(self, cwd: Path, env: dict[str, str], logs: Callable[[], str]) -> None:
        self.cwd, self.env, self.logs = cwd, env, logs
        self.state = cwd / ".terminal-state"

    def run(self, block: str, timeout_s: float = 90) -> str:
        script = (
            f"set -ea\n[ -f {self.state} ] && . {self.state}\n{block}\nexport -p > {self.state}\n"
        )
        try:
            result = subprocess.run(
                ["bash", "-c", script],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{block}\ndid not finish in {timeout_s} s\n{self.logs()}"
            ) from exc
        assert result.returncode == 0, (
            f"{block}\nfailed ({result.returncode}):\n{result.stdout}{result.stderr}\n{self.logs()}"
        )
        return result.stdout


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int]]:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists():
        pytest.skip("the README's commands need the virtualenv that `make` creates")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for name in ("mappings", "Makefile", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(venv)
    erp_port = free_port()
    config = tmp_path / "examples" / "hub.yaml"
    config.write_text(config.read_text().replace("127.0.0.1:9000", f"127.0.0.1:{erp_port}"))
    bin_dir = str(venv / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HUB_") and k not in (*DEMO_SECRETS, "VIRTUAL_ENV", "MAKEFLAGS")
    }
    env |= {
        "PATH": path,
        "HUB_HTTP_PORT": str(free_port()),
        "DEMO_ERP_PORT": str(erp_port),
        "MAKEFLAGS": "STAMP=",
    }
    yield tmp_path, env, erp_port


def test_try_it_runs_as_written(demo: tuple[Path, dict[str, str], int]) -> None:
    cwd, env, _erp_port = demo
    text = README.read_text()
    try_it = section(text, "Try it")
    blocks = sh_blocks(try_it)
    started: list[Background] = []

    def take(marker: str) -> str:
        assert blocks, f"Try it has no more shell blocks; expected one with {marker!r}"
        block = blocks.pop(0)
        assert marker in block, f"expected a block with {marker!r}, got:\n{block}"
        return block

    def logs() -> str:
        return "\n".join(f"--- {b.log.name}:\n{b.output()}" for b in started)

    try:
        hub = Background(take("make run"), cwd, env, cwd / "make-run.log")
        started.append(hub)
        term = Terminal(cwd, env, logs)

        out = term.run(take("hub check"))
        assert "examples/hub.yaml: ok" in out
        assert '"status":"ready"' in out

        send = take("--data-binary @examples/shopify-order.json")
        out = term.run(send)
        assert out.startswith("HTTP/1.1 202"), out
        event_id = json.loads(out.splitlines()[-1])["id"]

        out = term.run(take(".hub/outbox/orders.jsonl"))
        order = json.loads(out)
        assert order["correlationid"] == event_id
        assert order["data"]["number"] == "#9999"

        out = term.run(send)  # "Send the same request again"
        assert out.startswith("HTTP/1.1 200"), out
        assert json.loads(out.splitlines()[-1]) == {"status": "duplicate", "id": event_id}

        out = term.run(take("--data-binary @-"))
        assert out.startswith("HTTP/1.1 401"), out
        assert json.loads(out.splitlines()[-1])["error"] == "bad_signature"

        erp = Background(take("make demo-erp"), cwd, env, cwd / "make-demo-erp.log")
        started.append(erp)
        erp.wait_for(lambda o: "demo ERP listening" in o, "receiver listening")
        # The README's edit: "change `enabled: false` to `enabled: true` on the route
        # `orders-to-erp`".
        assert "change `enabled: false` to `enabled: true` on the route\n`orders-to-erp`" in (
            try_it
        )
        config = cwd / "examples" / "hub.yaml"
        yaml_text = config.read_text()
        route = yaml_text.index("- name: orders-to-erp")
        assert yaml_text.count("enabled: false") == 1 and yaml_text.index("enabled: false") > route
        config.write_text(yaml_text.replace("enabled: false", "enabled: true"))

        hub.wait_for(lambda o: "configuration reloaded" in o, "reload")
        # The order sent before the route existed reaches the new destination.
        erp.wait_for(
            lambda o: (
                f"idempotency-key: {idempotency_key_for(order['id'], 'orders-to-erp')}" in o
                and f"ce-id: {order['id']}" in o
                and '"number": "#9999"' in o
            ),
            "order at the receiver",
        )
        assert "authorization: ok" in erp.output()
        assert "Bearer" not in erp.output()  # the receiver never prints the secret

        # "Without make": the same hub started directly, in a fresh shell that set nothing.
        hub.stop()
        direct = Background(
            f"export PATH={cwd / '.venv' / 'bin'}:$PATH\n" + take("hub up -c examples/hub.yaml"),
            cwd,
            env,
            cwd / "hub-up.log",
        )
        started.append(direct)
        direct.wait_for(lambda o: "hub listening on" in o, "the hub started without make")
        assert not blocks, f"shell blocks of Try it not run: {blocks}"

        # Every `hub check` the README shows works in the same terminal.
        for command in re.findall(r"`(hub check (?:-c|--config) [^`]*)`", text):
            assert "examples/hub.yaml: ok" in term.run(command), command
    finally:
        for b in reversed(started):
            b.stop()


def env_table() -> list[tuple[list[str], list[str]]]:
    """(variables, shown defaults) of each row of the README's environment table."""
    text = README.read_text()
    start = text.index("### Environment (`HUB_*`")
    table = text[start : text.index("\n\n", text.index("| variable |", start))]
    rows = []
    for line in table.splitlines()[3:]:
        names, default = (cell.strip() for cell in line.split("|")[1:3])
        rows.append((re.findall(r"`(HUB_[A-Z0-9_]+)`", names), default.split(", ")))
    return rows


def shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_environment_table_lists_every_setting_with_its_default() -> None:
    from hub.settings import Settings

    rows = env_table()
    listed = [name for names, _ in rows for name in names]
    fields = Settings.model_fields
    assert sorted(listed) == sorted(f"HUB_{name.upper()}" for name in fields)
    for names, defaults in rows:
        if len(defaults) != len(names):  # one description for the group (e.g. "*(unset)*")
            assert len(defaults) == 1 and not defaults[0].startswith("`"), (names, defaults)
            continue
        for name, default in zip(names, defaults, strict=True):
            field = fields[name.removeprefix("HUB_").lower()]
            if default.startswith("`"):
                assert default.strip("`") == shown(field.default), name
            elif default.startswith("*("):
                assert field.get_default(call_default_factory=True) in (None, "", []), name


def test_the_demo_receiver_refuses_a_wrong_authorization_and_never_prints_it(
    tmp_path: Path,
) -> None:
    import httpx

    port = free_port()
    env = {**os.environ, "ERP_AUTHORIZATION": "Bearer right-token"}
    receiver = Background(
        f"exec {sys.executable} {ROOT / 'examples' / 'receiver.py'} --port {port}",
        tmp_path,
        env,
        tmp_path / "receiver.log",
    )
    try:
        receiver.wait_for(lambda o: "demo ERP listening" in o, "receiver listening")
        url = f"http://127.0.0.1:{port}/orders"
        headers = {"idempotency-key": "k1", "content-type": "application/json"}
        wrong = httpx.post(url, json={"n": 1}, headers={**headers, "authorization": "Bearer no"})
        assert wrong.status_code == 401
        right = {**headers, "authorization": "Bearer right-token"}
        assert httpx.post(url, json={"n": 1}, headers=right).json() == {"status": "received"}
        assert httpx.post(url, json={"n": 1}, headers=right).status_code == 200
        receiver.wait_for(lambda o: "a repeat of an idempotency key" in o, "the repeat noted")
        out = receiver.output()
        assert "authorization: wrong or missing -> 401" in out
        assert "authorization: ok" in out
        assert "right-token" not in out and "Bearer no" not in out
    finally:
        receiver.stop()
