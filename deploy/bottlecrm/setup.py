"""A real BottleCRM (PyPI ``django-crm``) for the hub's tests and demos: its own virtual
environment on Python 3.12 and a migrated PostgreSQL template database, both cached.

    python deploy/bottlecrm/setup.py            # or: make bottlecrm
    python deploy/bottlecrm/setup.py --print-env

- BottleCRM 1.35 needs Python 3.12: ``$HUB_BOTTLECRM_PYTHON``, else the newest 3.12 under
  pyenv (``~/.pyenv/versions/3.12.*``), else ``python3.12`` on PATH.
- The virtual environment holds ``django-crm`` and psycopg, pinned (:data:`PACKAGES`), under
  ``$HUB_TEST_CACHE_DIR`` (default ``$XDG_CACHE_HOME/hub-tests``, else ``~/.cache/hub-tests``)
  in a folder named after a digest of the pins, so changing a pin installs afresh.
- The template database (``hub_bottlecrm_<digest>``, built by template.py) has BottleCRM's
  migrations (about 100 s on an idle machine, several minutes on a busy one), an organisation,
  its admin, a personal access token (:data:`TOKEN`) and a webhook endpoint signing with
  :data:`WEBHOOK_SECRET` and subscribed to the account, contact, lead and deal events. A test
  clones it with ``CREATE DATABASE ... TEMPLATE`` (about a second) and points the endpoint at
  its hub.
- BottleCRM runs with ``hub_settings.py`` (this folder): Celery eager, and its SSRF guard
  relaxed to let webhooks reach a hub on 127.0.0.1 — for local tests only; read that module.
- PostgreSQL: ``$HUB_BOTTLECRM_POSTGRES_URI`` (default ``postgresql://postgres@127.0.0.1:5432/``).

Only the standard library is used here, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from systems import cache_dir, ensure_venv, locked  # deploy/systems.py

PACKAGES = ("django-crm==1.35.0", "psycopg[binary]==3.3.9")
PYTHON_VERSION = "3.12"

HERE = Path(__file__).resolve().parent
TEMPLATE_SCRIPT = HERE / "template.py"
SETTINGS_MODULE = "hub_settings"  # HERE / hub_settings.py

# What the template holds; a local test database's values, not secrets.
ORG = "Hub Test Org"
ADMIN_EMAIL = "hub@example.com"
ADMIN_PASSWORD = "hub-bottlecrm-password-0123"
TOKEN = "bcrm_pat_hub-test-token-0123456789abcdefghijklmnop"
WEBHOOK_SECRET = "whsec_hub-test-webhook-secret-0123456789"
SECRET_KEY = "hub-test-bottlecrm-django-secret-key-0123456789abcdef"
DATA_VERSION = "1"  # bump when template.py loads something new


@dataclass(frozen=True)
class BottleCrm:
    """A ready BottleCRM: where its Python is and which template database to clone."""

    venv: Path
    postgres_uri: str
    template: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def environment(self, database: str) -> dict[str, str]:
        """The environment BottleCRM's programs run with, on ``database``."""
        parts = urlsplit(self.postgres_uri)
        return {
            **os.environ,
            "PYTHONPATH": str(HERE),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "SECRET_KEY": SECRET_KEY,
            "ENV_TYPE": "dev",
            "DBNAME": database,
            "DBHOST": parts.hostname or "127.0.0.1",
            "DBPORT": str(parts.port or 5432),
            "DBUSER": parts.username or "postgres",
            "DBPASSWORD": parts.password or "",
        }


def postgres_uri() -> str:
    return os.environ.get("HUB_BOTTLECRM_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/")


def find_python() -> str:
    """A Python 3.12 to build the virtual environment with (one that runs: pyenv's shim on
    PATH exists even where 3.12 is not the selected version)."""
    explicit = os.environ.get("HUB_BOTTLECRM_PYTHON")
    if explicit:
        return explicit
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(
        glob.glob(f"{root}/versions/{PYTHON_VERSION}.*/bin/python{PYTHON_VERSION}"),
        key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".") if x.isdigit()],
        reverse=True,
    )
    on_path = shutil.which(f"python{PYTHON_VERSION}")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        works = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if works.returncode == 0:
            return candidate
    raise SystemExit(
        f"BottleCRM needs Python {PYTHON_VERSION}: install it (e.g. pyenv install "
        f"{PYTHON_VERSION}) or set HUB_BOTTLECRM_PYTHON to its interpreter"
    )


def digest() -> str:
    """Names the virtual environment: the pins and the Python version."""
    text = "\n".join((*PACKAGES, f"python{PYTHON_VERSION}"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def marker() -> str:
    """Marks a complete template: the pins, what template.py loads and its values."""
    text = "\n".join(
        (digest(), DATA_VERSION, TEMPLATE_SCRIPT.read_text(), TOKEN, WEBHOOK_SECRET, ADMIN_EMAIL)
    )
    return "hub-bottlecrm:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def log(message: str) -> None:
    print(f"[bottlecrm] {message}", file=sys.stderr, flush=True)


def ensure(uri: str | None = None) -> BottleCrm:
    """The virtual environment and the template database, built if missing."""
    uri = uri or postgres_uri()
    root = cache_dir()
    with locked(root / "bottlecrm.lock"):
        env = ensure_venv(root / f"bottlecrm-{digest()}", PACKAGES, log, find_python())
        crm = BottleCrm(venv=env, postgres_uri=uri, template=f"hub_bottlecrm_{digest()}")
        started = time.monotonic()
        subprocess.run(
            [
                str(crm.python),
                str(TEMPLATE_SCRIPT),
                "--name",
                crm.template,
                "--marker",
                marker(),
                "--org",
                ORG,
                "--email",
                ADMIN_EMAIL,
                "--password",
                ADMIN_PASSWORD,
                "--token",
                TOKEN,
                "--webhook-secret",
                WEBHOOK_SECRET,
            ],
            env=crm.environment(crm.template),
            cwd=root,  # BottleCRM writes server.log and security_audit.log there
            check=True,
        )
        log(f"template database {crm.template} ready in {time.monotonic() - started:.1f}s")
    return crm


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Install BottleCRM (django-crm) into a cached Python 3.12 virtual "
        "environment and build the PostgreSQL template database the hub's BottleCRM tests clone."
    )
    parser.add_argument(
        "--postgres-uri",
        default=None,
        help="PostgreSQL server for BottleCRM (default $HUB_BOTTLECRM_POSTGRES_URI or "
        "postgresql://postgres@127.0.0.1:5432/)",
    )
    parser.add_argument(
        "--print-env", action="store_true", help="print shell variables for the result"
    )
    args = parser.parse_args()
    crm = ensure(args.postgres_uri)
    if args.print_env:
        print(f"BOTTLECRM_VENV={crm.venv}")
        print(f"BOTTLECRM_TEMPLATE_DATABASE={crm.template}")
        print(f"BOTTLECRM_POSTGRES_URI={crm.postgres_uri}")
    else:
        print(f"virtual environment: {crm.venv}")
        print(f"template database:   {crm.template} (clone: createdb -T {crm.template} NAME)")
        print(f"admin:               {ADMIN_EMAIL} / {ADMIN_PASSWORD}")
        print(f"API token:           {TOKEN}")
        print(f"webhook secret:      {WEBHOOK_SECRET}")


if __name__ == "__main__":
    main()
