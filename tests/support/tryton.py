"""A real Tryton 8.2 server for the tests marked ``tryton``.

``tryton_install`` (session): the cached virtual environment and template database that
deploy/tryton/setup.py builds (minutes the first time, a second after). ``tryton`` (module): a
clone of the template (``CREATE DATABASE ... TEMPLATE``), served by its own ``trytond`` on a
free port of 127.0.0.1, stopped and dropped when the module's tests are done. Tests read back
what Tryton holds through :meth:`TrytonServer.rpc`, Tryton's own JSON-RPC, independently of the
connector under test.

PostgreSQL unreachable skips these tests (fails them under ``CI=true``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub.broker import free_port
from tests.support.systems import (
    load_setup,
    require_postgres,
    stop_process,
    wait_until_up,
)

setup = load_setup("tryton")


class TrytonError(Exception):
    """Tryton answered a JSON-RPC call with an error."""

    def __init__(self, error: Any) -> None:
        self.error = error
        super().__init__(repr(error))


@dataclass
class TrytonServer:
    """One running trytond serving one database."""

    url: str  # http://127.0.0.1:PORT
    database: str
    login: str
    password: str
    process: subprocess.Popen[bytes]
    log_file: Path
    _session: str | None = field(default=None, repr=False)
    _context: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/{self.database}/rpc/"

    def call(self, method: str, *params: Any, authorization: str | None = None) -> Any:
        """One JSON-RPC call; the result, or :class:`TrytonError`."""
        body = json.dumps({"id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(
            self.rpc_url, body, {"Content-Type": "application/json"}, method="POST"
        )
        if authorization:
            request.add_header("Authorization", authorization)
        with urllib.request.urlopen(request, timeout=60) as answer:
            reply = json.loads(answer.read())
        if reply.get("error") is not None:
            raise TrytonError(reply["error"])
        return reply["result"]

    def rpc(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """A model method as the hub's user (``model.party.party.search_read``, ...); the
        context is appended as Tryton's RPC expects: the user's preferences (company,
        language...) as a Tryton client sends them, updated with ``context``."""
        if self._session is None:
            user_id, session, *_ = self.call(
                "common.db.login", self.login, {"password": self.password}, "en"
            )
            token = base64.b64encode(f"{self.login}:{user_id}:{session}".encode()).decode()
            self._session = f"Session {token}"
            self._context = self.call(
                "model.res.user.get_preferences", True, {}, authorization=self._session
            )
        return self.call(
            method, *params, {**self._context, **(context or {})}, authorization=self._session
        )

    def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: list[str],
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.rpc(f"model.{model}.search_read", domain, 0, None, None, fields, context=context)
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def _psql(install: Any, sql: str) -> None:
    """One statement on the server's ``postgres`` database, with the Tryton environment's
    psycopg (installed with trytond; the hub's environment need not have it)."""
    code = (
        "import sys, psycopg\n"
        "with psycopg.connect(sys.argv[1], dbname='postgres', autocommit=True) as c:\n"
        "    c.execute(sys.argv[2])\n"
    )
    subprocess.run([str(install.python), "-c", code, install.postgres_uri, sql], check=True)


@pytest.fixture(scope="session")
def tryton_install() -> Any:
    """The Tryton environment and template (built once, cached under HUB_TEST_CACHE_DIR)."""
    require_postgres(setup.postgres_uri(), "Tryton", "HUB_TRYTON_POSTGRES_URI")
    return setup.ensure()


def start_tryton(install: Any, tmp: Path) -> TrytonServer:
    """Clone the template and serve the clone; :func:`stop_tryton` undoes both."""
    database = f"hub_tryton_test_{uuid.uuid4().hex[:10]}"
    _psql(install, f'CREATE DATABASE "{database}" TEMPLATE "{install.template}"')
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    config_file = tmp / "trytond.conf"
    config_file.write_text(setup.config_text(install.postgres_uri, port, tmp))
    log_file = tmp / "trytond.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(install.trytond), "-c", str(config_file), "-d", database],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = TrytonServer(
        url=f"http://127.0.0.1:{port}",
        database=database,
        login=setup.HUB_LOGIN,
        password=setup.HUB_PASSWORD,
        process=process,
        log_file=log_file,
    )

    def answers() -> bool:
        try:
            server.call("common.db.login", "nobody", {"password": "x"}, "en")
        except urllib.error.HTTPError:
            return True  # a refused login is an answer
        except (OSError, TrytonError):
            return False
        return True

    wait_until_up(
        process, answers, "trytond", server.log_tail, lambda: stop_tryton(install, server)
    )
    return server


def stop_tryton(install: Any, server: TrytonServer) -> None:
    stop_process(server.process)
    _psql(install, f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def tryton(tryton_install: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    """A trytond of its own for the test module, on a fresh clone of the template."""
    server = start_tryton(tryton_install, tmp_path_factory.mktemp("tryton"))
    try:
        yield server
    finally:
        stop_tryton(tryton_install, server)


def tryton_connection(tryton: TrytonServer, poll: str | None = None) -> str:
    """hub.yaml lines (under ``connections:``) of the ``tryton`` connection `erp` to ``tryton``,
    as the hub's user (its password read from HUB_TEST_TRYTON_PASSWORD); with ``poll`` (e.g.
    ``[sales, stock]``) it polls those every 0.5 s, without waiting for changes to settle."""
    text = f"""\
  erp:
    connector: tryton
    options:
      url: {tryton.url}
      database: {tryton.database}
      login: {setup.HUB_LOGIN}
      password: env:HUB_TEST_TRYTON_PASSWORD
"""
    if poll is not None:
        text += f"      poll: {poll}\n      poll_interval_s: 0.5\n      settle_s: 0\n"
    return text
