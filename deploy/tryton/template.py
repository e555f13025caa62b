"""Build the Tryton template database (runs inside Tryton's own virtual environment).

Called by deploy/tryton/setup.py, never imported by the hub. It builds the database under a
temporary name, activates the modules, loads the minimum a sale needs through proteus, and only
then renames it and writes the marker (a comment on the database): a build that dies half-way
leaves no template that looks finished.

    python template.py --uri postgresql://postgres@127.0.0.1:5432/ --name hub_tryton_x \\
        --marker hub-tryton:... --hub-password ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

MODULES = [
    "party",
    "country",
    "currency",
    "company",
    "product",
    "stock",
    "account",
    "account_invoice",
    "sale",
    "purchase",
]
# Countries created in the template (a real Tryton imports them all with
# trytond_import_countries; that takes minutes, so the tests' template has a few).
COUNTRIES = {
    "US": "United States",
    "CA": "Canada",
    "GB": "United Kingdom",
    "IE": "Ireland",
    "DE": "Germany",
    "FR": "France",
    "ES": "Spain",
    "IT": "Italy",
    "NL": "Netherlands",
    "BE": "Belgium",
    "CH": "Switzerland",
    "AT": "Austria",
    "AU": "Australia",
    "JP": "Japan",
}
CURRENCIES = {
    "EUR": ("Euro", "€", Decimal("0.92")),
    "GBP": ("Pound Sterling", "£", Decimal("0.79")),
}


def log(message: str) -> None:
    print(f"[tryton-template] {message}", file=sys.stderr, flush=True)


def admin_connection(uri: str):  # type: ignore[no-untyped-def]
    parts = urlsplit(uri)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def marker_of(cur, name: str) -> str | None:  # type: ignore[no-untyped-def]
    cur.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return row[0] or ""


def drop(cur, name: str) -> None:  # type: ignore[no-untyped-def]
    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def build(args: argparse.Namespace) -> None:
    conn = admin_connection(args.uri)
    cur = conn.cursor()
    if marker_of(cur, args.name) == args.marker:
        log(f"template database {args.name} is ready (marker {args.marker})")
        return
    started = time.monotonic()
    building = f"{args.name}_building"
    drop(cur, building)
    drop(cur, args.name)
    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
    with tempfile.TemporaryDirectory(prefix="hub-tryton-") as tmp:
        config_file = Path(tmp) / "trytond.conf"
        config_file.write_text(f"[database]\nuri = {args.uri}\npath = {tmp}\n")
        password_file = Path(tmp) / "admin-password"
        password_file.write_text(args.admin_password)
        env = dict(os.environ, TRYTONPASSFILE=str(password_file))
        log(f"activating {', '.join(MODULES)} in {building} (about a minute)")
        subprocess.run(
            [
                str(Path(sys.executable).with_name("trytond-admin")),
                "-c",
                str(config_file),
                "-d",
                building,
                "--activate-dependencies",
                "--email",
                "admin@example.com",
                "-u",
                *MODULES,
            ],
            check=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        log("loading company, chart of accounts, fiscal years, payment term, hub user")
        load_minimum(building, str(config_file), args)
    # proteus' in-process pool keeps connections open; FORCE closes them before the rename.
    cur.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (building,)
    )
    cur.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(building), sql.Identifier(args.name)
        )
    )
    cur.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(args.name), sql.Literal(args.marker)
        )
    )
    log(f"template database {args.name} built in {time.monotonic() - started:.0f}s")


def load_minimum(database: str, config_file: str, args: argparse.Namespace) -> None:
    # trytond reads its configuration (the PostgreSQL backend) when first imported
    os.environ["TRYTOND_CONFIG"] = config_file
    from proteus import Model, config

    cfg = config.set_trytond(database=database, config_file=config_file)
    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear, get_accounts
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company, get_company
    from trytond.modules.currency.tests.tools import get_currency

    Country = Model.get("country.country")
    for code, name in COUNTRIES.items():
        Country(name=name, code=code).save()

    Party = Model.get("party.party")
    company_party = Party(name=args.company)
    company_party.save()
    create_company(party=company_party, currency=get_currency(args.currency))
    company = get_company()
    Currency = Model.get("currency.currency")
    Rate = Model.get("currency.currency.rate")
    for code, (name, symbol, rate) in CURRENCIES.items():
        if code == args.currency or Currency.find([("code", "=", code)]):
            continue
        currency = Currency(name=name, code=code, symbol=symbol, numeric_code=None)
        currency.rates.append(Rate(date=dt.date(2000, 1, 1), rate=rate))
        currency.save()
    create_chart(company)

    this_year = dt.date.today().year
    for year in (this_year - 1, this_year, this_year + 1):
        fiscalyear = create_fiscalyear(company, (dt.date(year, 1, 1), dt.date(year, 12, 31)))
        set_fiscalyear_invoice_sequences(fiscalyear)
        fiscalyear.save()
        fiscalyear.click("create_period")

    payment_term = create_payment_term()
    payment_term.save()
    AccountConfiguration = Model.get("account.configuration")
    account_config = AccountConfiguration(1)
    account_config.default_customer_payment_term = payment_term
    account_config.save()

    accounts = get_accounts(company)
    Category = Model.get("product.category")
    category = Category(name=args.account_category)
    category.accounting = True
    category.account_expense = accounts["expense"]
    category.account_revenue = accounts["revenue"]
    category.save()

    # The hub's user: every group (a test database; a real one grants sale, stock, product and
    # party rights), the company, and an employee (a sale is quoted and confirmed by one).
    Employee = Model.get("company.employee")
    User = Model.get("res.user")
    Group = Model.get("res.group")
    employee_party = Party(name="Integration Hub")
    employee_party.save()
    employee = Employee(party=employee_party, company=company)
    employee.save()
    user = User(name="Integration Hub", login=args.hub_login, password=args.hub_password)
    user.groups.extend(Group.find([]))
    user.companies.append(company)
    user.company = company
    user.employees.append(employee)
    user.employee = employee
    user.save()
    admin = User.find([("login", "=", "admin")])[0]
    admin.employees.append(Employee(employee.id))
    admin.employee = Employee(employee.id)
    admin.save()
    del cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", required=True, help="trytond's database URI (no database name)")
    parser.add_argument("--name", required=True, help="the template database's name")
    parser.add_argument("--marker", required=True, help="comment that marks it complete")
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--hub-login", required=True)
    parser.add_argument("--hub-password", required=True)
    parser.add_argument("--company", required=True)
    parser.add_argument("--currency", required=True)
    parser.add_argument("--account-category", required=True)
    build(parser.parse_args())


if __name__ == "__main__":
    main()
