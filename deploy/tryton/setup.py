"""A real Tryton 8.2 for the hub's tests and demos: its own virtual environment and a
PostgreSQL template database with the minimum a sale needs, both cached.

    python deploy/tryton/setup.py            # or: make tryton
    python deploy/tryton/setup.py --print-env

- The virtual environment holds trytond and the modules the hub's connector uses, pinned
  (:data:`PACKAGES`), plus proteus to load the data. It is kept under
  ``$HUB_TEST_CACHE_DIR`` (default ``$XDG_CACHE_HOME/hub-tests``, else ``~/.cache/hub-tests``)
  in a folder named after a digest of the pins, so changing a pin installs afresh.
- The template database (``hub_tryton_<digest>``) has the modules activated and: a company
  with its currency (USD; EUR and GBP with a rate), a chart of accounts from Tryton's template,
  fiscal years (last, this and next year) with periods and invoice sequences, a payment term
  that is also the default customer payment term, an account category for products
  ("Hub products"), the stock module's warehouse (code ``WH``), a few countries, and the hub's
  user (login ``hub``) with an employee. It is built under another name and renamed when
  complete, then marked with a comment; a template whose marker matches is used as it is.
  Building it takes about 1-2 minutes; a test clones it with ``CREATE DATABASE ... TEMPLATE``.
- PostgreSQL: ``$HUB_TRYTON_POSTGRES_URI`` (default ``postgresql://postgres@127.0.0.1:5432/``).

Only the standard library is used here, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from systems import cache_dir, ensure_venv, locked  # deploy/systems.py

PACKAGES = (
    "trytond[postgresql]==8.2.1",
    "trytond-party==8.2.0",
    "trytond-country==8.2.0",
    "trytond-currency==8.2.0",
    "trytond-company==8.2.0",
    "trytond-product==8.2.0",
    "trytond-stock==8.2.1",
    "trytond-account==8.2.1",
    "trytond-account-invoice==8.2.0",
    "trytond-sale==8.2.0",
    "trytond-purchase==8.2.0",
    "proteus==8.2.0",
    "psycopg[binary]>=3.2",
)

HERE = Path(__file__).resolve().parent
TEMPLATE_SCRIPT = HERE / "template.py"

# What the template holds; the tests and the example configuration use these.
ADMIN_PASSWORD = "hub-tryton-admin-password"  # a local test database's, not a secret
HUB_LOGIN = "hub"
HUB_PASSWORD = "hub-tryton-password-0123"  # idem
COMPANY = "Hub Test Company"
CURRENCY = "USD"
ACCOUNT_CATEGORY = "Hub products"
WAREHOUSE = "WH"
DATA_VERSION = "1"  # bump when template.py loads something new


@dataclass(frozen=True)
class Tryton:
    """A ready Tryton: where its programs are and which template database to clone."""

    venv: Path
    postgres_uri: str
    template: str

    @property
    def trytond(self) -> Path:
        return self.venv / "bin" / "trytond"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def postgres_uri() -> str:
    return os.environ.get("HUB_TRYTON_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/")


def digest() -> str:
    """Names the virtual environment: the pins and this Python's version."""
    text = "\n".join((*PACKAGES, f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def marker() -> str:
    """Marks a complete template: the pins, what template.py loads, and the year (its fiscal
    years cover last, this and next year)."""
    text = "\n".join((digest(), DATA_VERSION, TEMPLATE_SCRIPT.read_text()))
    data = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"hub-tryton:{data}:{time.gmtime().tm_year}"


def log(message: str) -> None:
    print(f"[tryton] {message}", file=sys.stderr, flush=True)


def ensure(uri: str | None = None) -> Tryton:
    """The virtual environment and the template database, built if missing."""
    uri = uri or postgres_uri()
    root = cache_dir()
    with locked(root / "tryton.lock"):
        env = ensure_venv(root / f"tryton-{digest()}", PACKAGES, log)
        template = f"hub_tryton_{digest()}"
        subprocess.run(
            [
                str(env / "bin" / "python"),
                str(TEMPLATE_SCRIPT),
                "--uri",
                uri,
                "--name",
                template,
                "--marker",
                marker(),
                "--admin-password",
                ADMIN_PASSWORD,
                "--hub-login",
                HUB_LOGIN,
                "--hub-password",
                HUB_PASSWORD,
                "--company",
                COMPANY,
                "--currency",
                CURRENCY,
                "--account-category",
                ACCOUNT_CATEGORY,
            ],
            check=True,
        )
    return Tryton(venv=env, postgres_uri=uri, template=template)


def config_text(uri: str, port: int, data_path: Path) -> str:
    """trytond's configuration for one server on 127.0.0.1:``port``."""
    return (
        f"[database]\nuri = {uri}\npath = {data_path}\n\n"
        f"[web]\nlisten = 127.0.0.1:{port}\n\n"
        # the tests log in often, from one address
        "[session]\nmax_attempt = 1000\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Install Tryton 8.2 into a cached virtual environment and build the "
        "PostgreSQL template database the hub's Tryton tests clone."
    )
    parser.add_argument(
        "--postgres-uri",
        default=None,
        help="PostgreSQL server for trytond (default $HUB_TRYTON_POSTGRES_URI or "
        "postgresql://postgres@127.0.0.1:5432/)",
    )
    parser.add_argument(
        "--print-env", action="store_true", help="print shell variables for the result"
    )
    args = parser.parse_args()
    started = time.monotonic()
    tryton = ensure(args.postgres_uri)
    log(f"ready in {time.monotonic() - started:.1f}s")
    if args.print_env:
        print(f"TRYTON_VENV={tryton.venv}")
        print(f"TRYTON_TEMPLATE_DATABASE={tryton.template}")
        print(f"TRYTON_POSTGRES_URI={tryton.postgres_uri}")
    else:
        print(f"virtual environment: {tryton.venv}")
        print(f"template database:   {tryton.template} (clone: createdb -T {tryton.template} NAME)")
        print(f"hub user:            {HUB_LOGIN} / {HUB_PASSWORD}")


if __name__ == "__main__":
    main()
