"""Builds BottleCRM's template database (run by setup.py with BottleCRM's own Python).

    python template.py --name NAME --marker MARKER --email E --token T --webhook-secret S

If a database NAME exists whose comment is MARKER, it is complete and nothing is done. Else a
database is built under a temporary name: BottleCRM's migrations, one organisation, its admin
(a user with an ADMIN profile), a personal access token with the given value, and a webhook
endpoint signing with the given secret, subscribed to the account, contact, lead and deal
events (its URL is a placeholder: the tests point it at their hub). It is then renamed NAME and
marked, so a half-built template is never used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psycopg

EVENTS = [
    "account.created",
    "account.updated",
    "account.deleted",
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "lead.created",
    "lead.updated",
    "lead.deleted",
    "deal.created",
    "deal.updated",
    "deal.deleted",
    "deal.won",
    "deal.lost",
]
PLACEHOLDER_URL = "http://127.0.0.1:9/set-by-the-tests"


def admin_sql(sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(
        host=os.environ.get("DBHOST", "127.0.0.1"),
        port=os.environ.get("DBPORT", "5432"),
        user=os.environ.get("DBUSER", "postgres"),
        password=os.environ.get("DBPASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def load(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    print(f"[bottlecrm] migrated in {time.monotonic() - started:.0f}s", file=sys.stderr)

    from common.models import Org, PersonalAccessToken, Profile, User
    from webhooks.models import WebhookEndpoint

    user = User.objects.create_user(email=args.email, password=args.password)
    org = Org.objects.create(name=args.org, company_name=args.org)
    profile = Profile.objects.create(
        user=user, org=org, role="ADMIN", is_organization_admin=True, has_sales_access=True
    )
    PersonalAccessToken.objects.create(
        profile=profile,
        org=org,
        name="hub",
        token_hash=PersonalAccessToken.hash_token(args.token),
        token_prefix=args.token[:13],
        created_by=user,
    )
    WebhookEndpoint.objects.create(
        org=org,
        url=PLACEHOLDER_URL,
        description="hub",
        events=EVENTS,
        secret=args.webhook_secret,
        created_by=user,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("name", "marker", "org", "email", "password", "token", "webhook-secret"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    found = admin_sql(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        args.name,
    )
    if found and found[0][0] == args.marker:
        return
    building = f"{args.name}_building"
    admin_sql(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    admin_sql(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)')
    admin_sql(f'CREATE DATABASE "{building}"')
    os.environ["DBNAME"] = building
    load(args)
    from django.db import connections

    connections.close_all()
    admin_sql(f'ALTER DATABASE "{building}" RENAME TO "{args.name}"')
    admin_sql(f"COMMENT ON DATABASE \"{args.name}\" IS '{args.marker}'")


if __name__ == "__main__":
    main()
