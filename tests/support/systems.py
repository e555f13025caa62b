"""What tests/support/tryton.py and tests/support/bottlecrm.py share: loading a
deploy/<system>/setup.py script, skipping without PostgreSQL, a free port, waiting for a
server to answer and stopping it."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


def load_setup(system: str) -> ModuleType:
    """deploy/<system>/setup.py, which is a script, not a package."""
    spec = importlib.util.spec_from_file_location(
        f"hub_{system}_setup", ROOT / "deploy" / system / "setup.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def require_postgres(uri: str, what: str, variable: str) -> None:
    """Skip the test (fail it under ``CI=true``) when PostgreSQL at ``uri`` is unreachable."""
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 5):
            pass
    except OSError as exc:
        reason = f"PostgreSQL for {what} ({uri}) is not reachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the {what} tests must run)")
        pytest.skip(f"{reason}; set {variable} or start PostgreSQL")


def wait_until_up(
    process: subprocess.Popen[bytes],
    answers: Callable[[], bool],
    what: str,
    log_tail: Callable[[], str],
    give_up: Callable[[], None],
) -> None:
    """Poll ``answers()`` until it is true; a process that exits or does not answer within
    :data:`START_TIMEOUT_S` fails the test after ``give_up()`` (stop and drop)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers():
        if process.poll() is not None:
            give_up()
            pytest.fail(f"{what} exited with {process.returncode}:\n{log_tail()}")
        if time.monotonic() > deadline:
            give_up()
            pytest.fail(f"{what} did not answer within {START_TIMEOUT_S:g}s:\n{log_tail()}")
        time.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
