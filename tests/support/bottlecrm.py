"""A real BottleCRM (PyPI ``django-crm``) server for the tests marked ``bottlecrm``.

``bottlecrm_install`` (session): the cached virtual environment and template database that
deploy/bottlecrm/setup.py builds (minutes the first time, a second after). ``bottlecrm``
(module): a clone of the template (``CREATE DATABASE ... TEMPLATE``), served by Django's
``runserver`` on a free port of 127.0.0.1 with deploy/bottlecrm/hub_settings.py (Celery eager,
SSRF guard relaxed to let webhooks reach 127.0.0.1), stopped and dropped when the module's tests
are done. Tests drive BottleCRM and read back what it holds through its own REST API with the
template's personal access token (:meth:`BottleCrmServer.api`), independently of the connector
under test; :meth:`BottleCrmServer.point_webhook` sends its webhooks to a hub.

PostgreSQL unreachable skips these tests (fails them under ``CI=true``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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

setup = load_setup("bottlecrm")


class ApiError(Exception):
    """BottleCRM answered with an HTTP error."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body[:500]}")


@dataclass
class BottleCrmServer:
    """One running BottleCRM serving one database."""

    url: str  # http://127.0.0.1:PORT
    database: str
    token: str
    webhook_secret: str
    process: subprocess.Popen[bytes]
    log_file: Path
    install: Any

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One call to BottleCRM's REST API (``/api/<path>``) as the template's admin."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/{path.lstrip('/')}", data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode("utf-8", "replace")) from None
        return json.loads(text) if text else None

    def sql(self, statement: str, *params: Any) -> list[list[Any]]:
        """One statement on this BottleCRM's database (BottleCRM's own psycopg)."""
        return _sql(self.install, self.database, statement, list(params))

    def point_webhook(self, url: str, *, active: bool = True) -> None:
        """Send the template's webhook endpoint to ``url`` (the hub's ingress)."""
        self.sql("UPDATE webhook_endpoint SET url = %s, is_active = %s", url, active)

    def deliveries(self) -> list[dict[str, Any]]:
        """BottleCRM's log of webhook deliveries, oldest first."""
        rows = self.sql(
            "SELECT id::text, event, status, attempts, response_status, error "
            "FROM webhook_delivery ORDER BY created_at"
        )
        keys = ("id", "event", "status", "attempts", "response_status", "error")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def contact(self, contact_id: str) -> dict[str, Any]:
        """The contact as ``contacts/<id>/`` shows it now."""
        answer: dict[str, Any] = self.api("GET", f"contacts/{contact_id}/")
        return answer.get("contact_obj", answer)

    def saves(self, record_id: str) -> list[str]:
        """The webhooks BottleCRM sent for this record (a contact, a lead), oldest first: one
        per save."""
        rows = self.sql(
            "SELECT event FROM webhook_delivery WHERE payload->'data'->>'id' = %s "
            "ORDER BY created_at",
            record_id,
        )
        return [row[0] for row in rows]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return ""


_SQL = """
import json, sys, psycopg
uri, database, statement, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with psycopg.connect(uri, dbname=database, autocommit=True) as conn:
    cursor = conn.execute(statement, params or None)
    rows = cursor.fetchall() if cursor.description else []
print(json.dumps([list(r) for r in rows], default=str))
"""


def _sql(install: Any, database: str, statement: str, params: list[Any] | None = None) -> Any:
    """With BottleCRM's psycopg (the hub's environment need not have it)."""
    done = subprocess.run(
        [
            str(install.python),
            "-c",
            _SQL,
            install.postgres_uri,
            database,
            statement,
            json.dumps(params or []),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def bottlecrm_install() -> Any:
    """BottleCRM's environment and template (built once, cached under HUB_TEST_CACHE_DIR)."""
    require_postgres(setup.postgres_uri(), "BottleCRM", "HUB_BOTTLECRM_POSTGRES_URI")
    return setup.ensure()


def start_bottlecrm(install: Any, tmp: Path) -> BottleCrmServer:
    """Clone the template and serve the clone; :func:`stop_bottlecrm` undoes both."""
    database = f"hub_bottlecrm_test_{uuid.uuid4().hex[:10]}"
    _sql(install, "postgres", f'CREATE DATABASE "{database}" TEMPLATE "{install.template}"')
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log_file = tmp / "bottlecrm.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(install.python),
                "-m",
                "django",
                "runserver",
                f"127.0.0.1:{port}",
                "--noreload",
                "--skip-checks",
            ],
            cwd=tmp,  # BottleCRM writes server.log and security_audit.log there
            env=install.environment(database),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = BottleCrmServer(
        url=f"http://127.0.0.1:{port}",
        database=database,
        token=setup.TOKEN,
        webhook_secret=setup.WEBHOOK_SECRET,
        process=process,
        log_file=log_file,
        install=install,
    )

    def answers() -> bool:
        try:
            server.api("GET", "contacts/?limit=1")
        except (OSError, ApiError):
            return False
        return True

    wait_until_up(
        process, answers, "BottleCRM", server.log_tail, lambda: stop_bottlecrm(install, server)
    )
    return server


def stop_bottlecrm(install: Any, server: BottleCrmServer) -> None:
    stop_process(server.process)
    _sql(install, "postgres", f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def bottlecrm(
    bottlecrm_install: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BottleCrmServer]:
    """A BottleCRM of its own for the test module, on a fresh clone of the template."""
    server = start_bottlecrm(bottlecrm_install, tmp_path_factory.mktemp("bottlecrm"))
    try:
        yield server
    finally:
        stop_bottlecrm(bottlecrm_install, server)
