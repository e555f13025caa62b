"""The ``hub`` command line. Every command has ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AnyUrl, SecretStr
from pydantic.fields import FieldInfo

from . import __version__
from .errors import ConfigError, HubError
from .settings import Settings

if TYPE_CHECKING:
    from .mapping.engine import CompiledMapping

log = logging.getLogger("hub")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"configuration refused ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Integration hub: connectors publish canonical events to Kafka; YAML "
        "mappings transform and route them to destinations.",
    )
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the hub: ingress, workers and (if needed) the broker",
        description="Run ingress (HTTP), the mapper and delivery workers. Without "
        "HUB_KAFKA_BOOTSTRAP_SERVERS an embedded Tansu broker is started. Stops "
        "cleanly on SIGINT/SIGTERM.",
    )
    _config_arg(up)
    up.add_argument("--host", help="HTTP listen address (HUB_HTTP_HOST)")
    up.add_argument("--port", type=int, help="HTTP port (HUB_HTTP_PORT)")
    up.add_argument(
        "--role",
        choices=["all", "ingress", "workers", "mapper", "delivery"],
        default="all",
        help="run only the HTTP ingress, only the workers (mapper and delivery), or only one "
        "kind of worker (default: all)",
    )
    up.set_defaults(func=cmd_up)

    check = sub.add_parser(
        "check",
        help="validate hub.yaml, the mappings and the routes",
        description="Load hub.yaml and every mapping as `hub up` would and "
        "report every problem with file, line and path. Exit 0 if all is well.",
    )
    _config_arg(check)
    check.set_defaults(func=cmd_check)

    mappings = sub.add_parser("mappings", help="check and test mapping files")
    mappings.set_defaults(func=lambda _a: _help(mappings))
    msub = mappings.add_subparsers(title="commands", metavar="COMMAND")
    mcheck = msub.add_parser("check", help="compile every mapping and report problems")
    mcheck.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("mappings"),
        help="folder of mapping files (default: mappings)",
    )
    mcheck.set_defaults(func=cmd_mappings_check)
    mtest = msub.add_parser(
        "test",
        help="run the YAML test cases of the mappings",
        description="Run mapping test cases (default: mappings/tests) and "
        "show a diff for each failure. Exit 1 if any case fails.",
    )
    mtest.add_argument("path", nargs="?", type=Path, help="a test file or folder")
    mtest.add_argument(
        "--mappings",
        type=Path,
        default=Path("mappings"),
        help="folder of mapping files (default: mappings)",
    )
    mtest.set_defaults(func=cmd_mappings_test)

    schemas = sub.add_parser("schemas", help="the canonical JSON Schemas in schemas/")
    schemas.set_defaults(func=lambda _a: _help(schemas))
    ssub = schemas.add_subparsers(title="commands", metavar="COMMAND")
    export = ssub.add_parser("export", help="write the schemas generated from the models")
    export.add_argument("directory", nargs="?", type=Path, default=Path("schemas"))
    export.set_defaults(func=cmd_schemas_export)
    scheck = ssub.add_parser("check", help="exit 1 if schemas/ differs from the models")
    scheck.add_argument("directory", nargs="?", type=Path, default=Path("schemas"))
    scheck.set_defaults(func=cmd_schemas_check)

    conns = sub.add_parser(
        "connectors",
        help="list the connectors and their options; check connections",
        description="Without a command: every installed connector with its options.",
    )
    conns.set_defaults(func=cmd_connectors)
    csub = conns.add_subparsers(title="commands", metavar="COMMAND")
    ccheck = csub.add_parser(
        "check",
        help="reach each connection's system, changing nothing",
        description="Load hub.yaml, then have each named connection (default: all) reach its "
        "system without changing anything: a destination is asked a HEAD, a file sink whether "
        "it can write. Prints what was checked or what failed and what to do. Exit 0 if every "
        "check passed, 1 if one failed, 2 if the configuration is refused.",
    )
    ccheck.add_argument("connections", nargs="*", metavar="CONNECTION")
    _config_arg(ccheck)
    ccheck.set_defaults(func=cmd_connectors_check)

    db = sub.add_parser(
        "db",
        help="the state database's schema: its revision, upgrading it",
        description="The hub's tables are made and changed by migrations (hub/migrations); "
        "`hub up` applies them at start unless HUB_DB_MIGRATE=false.",
    )
    db.set_defaults(func=lambda _a: _help(db))
    dsub = db.add_subparsers(title="commands", metavar="COMMAND")
    dcurrent = dsub.add_parser(
        "current",
        help="the revision the database is at, and this hub's",
        description="Print the database's schema revision and this hub's newest (head). "
        "Exit 0 if the database is at the head, 1 otherwise (empty, behind, or migrated by a "
        "newer hub).",
    )
    _database_arg(dcurrent)
    dcurrent.set_defaults(func=cmd_db_current)
    dupgrade = dsub.add_parser(
        "upgrade",
        help="upgrade the database schema to this hub's revision",
        description="Apply the migrations up to this hub's head, as `hub up` does at start "
        "(one process at a time). A database made before migrations is adopted, its rows kept; "
        "one migrated by a newer hub is refused. Run it before a deploy whose hubs run with "
        "HUB_DB_MIGRATE=false.",
    )
    _database_arg(dupgrade)
    dupgrade.set_defaults(func=cmd_db_upgrade)

    mdm = sub.add_parser("mdm", help="master data: upgrade steps")
    mdm.set_defaults(func=lambda _a: _help(mdm))
    mdsub = mdm.add_subparsers(title="commands", metavar="COMMAND")
    legacy = mdsub.add_parser(
        "alias-legacy-ids",
        help="keep golden ids derived from connection names resolving (after meta.system)",
        description="Mappings once derived golden ids from the connection's name "
        "(golden_id(entity, meta.connection, id)); they derive them from its system now "
        "(meta.system), so for a connection whose name is not its system (shop of system "
        "shopify) an object's id changed. For every crosswalk row of such a connection's "
        "system, store the id derived from the connection's name as an alias of the row's "
        "golden id: /api/mdm answers it with resolves_to. Idempotent; objects the crosswalk "
        "never linked cannot be found. Prints what it did per connection.",
    )
    _config_arg(legacy)
    _database_arg(legacy)
    legacy.add_argument(
        "--connection",
        action="append",
        default=[],
        metavar="NAME[=SYSTEM]",
        help="only this connection (repeatable); NAME=SYSTEM for one no longer in hub.yaml "
        "(then hub.yaml is not read). Default: every source connection (webhook or polled) "
        "of hub.yaml whose name is not its system",
    )
    legacy.add_argument("--dry-run", action="store_true", help="count, write nothing")
    legacy.set_defaults(func=cmd_mdm_alias_legacy_ids)

    from .auth import ROLES

    usr = sub.add_parser(
        "users",
        help="dashboard users: add, list, set a role, disable",
        description="Users of the ops dashboard (/ui) and API. Roles: viewer (reads, personal "
        "data masked), operator (replay, edit, discard, retry now), steward (master-data "
        "decisions), admin (users, tokens, audit log); each has the rights of the ones before.",
    )
    usr.set_defaults(func=lambda _a: _help(usr))
    usub = usr.add_subparsers(title="commands", metavar="COMMAND")
    uadd = usub.add_parser(
        "add",
        help="add a user (the password is asked for, or read from stdin with --password-stdin)",
    )
    uadd.add_argument("name")
    uadd.add_argument("--role", choices=ROLES, default="viewer")
    uadd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    _database_arg(uadd)
    uadd.set_defaults(func=cmd_users_add)
    ulist = usub.add_parser("list", help="list users, their roles and whether disabled")
    _database_arg(ulist)
    ulist.set_defaults(func=cmd_users_list)
    urole = usub.add_parser("set-role", help="change a user's role (ends their sessions)")
    urole.add_argument("name")
    urole.add_argument("role", choices=ROLES)
    _database_arg(urole)
    urole.set_defaults(func=cmd_users_set_role)
    udis = usub.add_parser("disable", help="disable a user (ends their sessions)")
    udis.add_argument("name")
    udis.add_argument("--enable", action="store_true", help="enable them again instead")
    _database_arg(udis)
    udis.set_defaults(func=cmd_users_disable)

    tok = sub.add_parser("tokens", help="API tokens for scripts: create, list, revoke")
    tok.set_defaults(func=lambda _a: _help(tok))
    tsub = tok.add_subparsers(title="commands", metavar="COMMAND")
    tcreate = tsub.add_parser(
        "create", help="create a token; its value is printed once (only its hash is kept)"
    )
    tcreate.add_argument("name")
    tcreate.add_argument("--role", choices=ROLES, default="viewer")
    _database_arg(tcreate)
    tcreate.set_defaults(func=cmd_tokens_create)
    tlist = tsub.add_parser("list", help="list tokens (never their values)")
    _database_arg(tlist)
    tlist.set_defaults(func=cmd_tokens_list)
    trevoke = tsub.add_parser("revoke", help="revoke a token by its id")
    trevoke.add_argument("id")
    _database_arg(trevoke)
    trevoke.set_defaults(func=cmd_tokens_revoke)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--config", type=Path, help="path of hub.yaml (HUB_CONFIG; default hub.yaml)"
    )


def _database_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="SQLAlchemy URL of the database (HUB_DATABASE_URL; default SQLite in HUB_STATE_DIR)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "config", None):
        overrides["config"] = args.config
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    if getattr(args, "url", None):
        overrides["database_url"] = args.url
    return Settings(**overrides)  # type: ignore[arg-type]


def load(settings: Settings):  # type: ignore[no-untyped-def]
    """hub.yaml and the mappings it names, cross-checked."""
    from .config import check_routes, load_config
    from .mapping import load_mappings

    config = load_config(settings.config, mdm=settings.mdm_config)
    mappings = load_mappings(settings.mappings_dir or config.mappings_dir)
    check_routes(config, mappings)
    return config, mappings


def cmd_up(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .runtime import Hub

    settings = _settings(args)
    setup_logging(settings.log_level, settings.log_format)
    config, mappings = load(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        roles = frozenset({"ingress", "workers"} if args.role == "all" else {args.role})
        async with Hub(settings, config, mappings, roles=roles) as hub:
            _freeze_startup_objects()
            log.info(
                "hub %s up: %d connection(s) (%d idle), %d route(s); Ctrl-C to stop",
                __version__,
                len(config.connections) + len(config.idle),
                len(config.idle),
                len(config.inbound) + len(config.outbound),
            )
            del hub
            await stop.wait()
            log.info("shutting down")

    _run_loop(run())
    return 0


def _freeze_startup_objects() -> None:
    """Move what startup allocated (modules, configuration, compiled mappings: ~110,000
    objects) out of the garbage collector's reach. Each full collection scanned them all and
    paused the process for 60-150 ms at a time under load, which was the p99 of bench/pipeline
    at 1,000 events/s (bench/README.md). They live as long as the process anyway."""
    gc.collect()
    gc.freeze()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (it is a dependency except on Windows): the event loop was
    ~15% of a worker's CPU on asyncio's own loop (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def cmd_check(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # a weak secret
    settings = _settings(args)
    config, mappings = load(settings)
    print(f"{settings.config}: ok")
    print(
        "  connections: "
        + (", ".join(f"{n} ({c.name})" for n, c in config.connections.items()) or "none")
    )
    if config.idle:
        print(
            "  idle (no enabled route uses them; their secrets are read when one does): "
            + ", ".join(f"{n} ({c.connector.name})" for n, c in config.idle.items())
        )
    for r in config.inbound:
        print(
            f"  route {r.name}: {r.connection} -> {r.mapping}{'' if r.enabled else ' (disabled)'}"
        )
    for o in config.outbound:
        print(
            f"  route {o.name}: canonical.{o.entity} -> {o.destination}"
            + ("" if o.enabled else " (disabled)")
        )
    print(f"  mappings: {len(mappings.mappings)} in {mappings.directory}")
    return 0


def cmd_mappings_check(args: argparse.Namespace) -> int:
    from .mapping import load_mappings

    mappings = load_mappings(args.directory)
    for name, m in sorted(mappings.mappings.items()):
        print(f"ok  {name}  ({_mapping_kind(m)}, version {m.version})")
    return 0


def _mapping_kind(m: CompiledMapping) -> str:
    if m.target_entity is not None:
        return f"canonical {m.target_entity}"
    if m.target_format is not None:
        source = f"canonical {m.source_entity}" if m.source_entity else "canonical events"
        return f"outbound: {source} -> {m.target_format}"
    return "fragment"


def cmd_mappings_test(args: argparse.Namespace) -> int:
    from .mapping.testing import run_tests

    results = run_tests(args.mappings, args.path)
    failed = [r for r in results if not r.ok]
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.mapping}: {r.name}")
        if not r.ok:
            for line in r.detail.splitlines():
                print(f"      {line}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        print(f"no test cases found under {args.path or args.mappings / 'tests'}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from .schemas import write_schemas

    for path in write_schemas(args.directory):
        print(f"wrote {path}")
    return 0


def cmd_schemas_check(args: argparse.Namespace) -> int:
    from .schemas import check_schemas

    stale = check_schemas(args.directory)
    if stale:
        print(f"out of date: {', '.join(stale)}; run `hub schemas export`", file=sys.stderr)
        return 1
    print("schemas are up to date")
    return 0


def cmd_connectors(args: argparse.Namespace) -> int:
    import connectors

    for name in connectors.names():
        cls = connectors.get(name)
        assert cls is not None
        print(f"{name}: {cls.title} - {cls.description}")
        for field_name, f in cls.Options.model_fields.items():
            print(f"    {field_name} ({_option_kind(f)}): {f.description or ''}")
    return 0


def cmd_connectors_check(args: argparse.Namespace) -> int:
    from .config import load_config
    from .errors import ConfigError, ConnectionCheckFailed

    # A connection named here is opened (its secrets read) even if no enabled route uses it.
    config = load_config(_settings(args).config, activate=frozenset(args.connections))
    names = args.connections or config.connection_names()
    unknown = [n for n in names if n not in config.connections and n not in config.idle]
    if unknown:
        known = ", ".join(config.connection_names()) or "none"
        print(f"no connection named {', '.join(unknown)} (known: {known})", file=sys.stderr)
        return 2

    async def run() -> int:
        failed = 0
        for name in names:
            connection = config.connections.get(name)
            if connection is None:  # idle: checked if its secrets can be read
                idle = config.idle[name]
                try:
                    connection = idle.open()
                except ConfigError as exc:
                    why = "; ".join(p.message for p in exc.problems)
                    print(
                        f"idle  {name} ({idle.connector.name}): no enabled route uses it; "
                        f"not checked: {why}"
                    )
                    continue
            try:
                async with asyncio.timeout(30):
                    result = await connection.check_connection()
            except ConnectionCheckFailed as exc:
                failed += 1
                print(f"FAIL  {name} ({connection.name}): {exc}")
            except TimeoutError:
                failed += 1
                print(f"FAIL  {name} ({connection.name}): no answer within 30 s")
            else:
                print(f"ok    {name} ({connection.name}): {result}")
        return 1 if failed else 0

    return asyncio.run(run())


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_db_current(args: argparse.Namespace) -> int:
    from . import migrations
    from .db import Database

    url = _settings(args).database_url

    async def revision() -> str | None:
        db = Database(url)
        try:
            return await db.revision()
        finally:
            await db.close()

    at, head = asyncio.run(revision()), migrations.head()
    print(f"database: {_shown_url(url)}")
    if at == head:
        print(f"revision: {at} (head)")
        return 0
    if at is None:
        print(
            f"revision: none (an empty database, or one made before migrations); "
            f"`hub db upgrade` brings it to {head}"
        )
    elif not migrations.known(at):
        print(
            f"revision: {at}, unknown to this hub (its newest is {head}): a newer hub migrated "
            "it; upgrade the hub"
        )
    else:
        print(f"revision: {at}; this hub's head is {head}: run `hub db upgrade`")
    return 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from . import migrations

    url = _settings(args).database_url
    print(f"database: {_shown_url(url)}")
    print(migrations.upgrade(url))
    return 0


def cmd_mdm_alias_legacy_ids(args: argparse.Namespace) -> int:
    from .aliases import alias_legacy_ids
    from .db import Database

    settings = _settings(args)
    given = dict(c.partition("=")[::2] for c in args.connection)
    connections = {n: s for n, s in given.items() if s}
    if len(connections) < len(given) or not given:
        from .config import load_config

        config = load_config(settings.config, mdm=settings.mdm_config)
        # by default the sources: inbound mappings are where golden_id(.., meta.connection, ..)
        # derived ids from a connection's name
        sources = [n for n in config.connections if config.webhook_source(n) is not None]
        sources += list(config.polling_sources())
        for name in given or sources:
            if name in connections:
                continue
            system = config.system_of(name)
            if system is None:
                raise HubError(
                    f"{settings.config} has no connection {name!r}: name its system "
                    f"(--connection {name}=SYSTEM)"
                )
            connections[name] = system
    renamed = {n: s for n, s in connections.items() if n != s}

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            await db.start()
            return await alias_legacy_ids(db, renamed, actor=_cli_actor(), dry_run=args.dry_run)
        finally:
            await db.close()

    print(f"database: {_shown_url(settings.database_url)}")
    if not renamed:
        print("no connection whose name is not its system: nothing to do")
        return 0
    verb = "would store" if args.dry_run else "stored"
    for name, count in asyncio.run(run()).items():
        print(
            f"{name} (system {count.system}): {count.rows} crosswalk row(s), {verb} "
            f"{count.written} alias(es), {count.kept} kept (stored already)"
        )
        for a in count.examples:
            print(f"  {a.entity} {a.alias} -> {a.golden_id} ({count.system} {a.external_id!r})")
    return 0


def _with_auth(args: argparse.Namespace, work: Any) -> Any:
    """``work(auth)`` on the database the hub uses (migrated first: a first admin can be made
    before the hub ever started), each change written to the audit log as ``cli``. A refusal
    (:class:`~hub.auth.AuthError`: unknown user, weak password, ...) is a
    :class:`~hub.errors.HubError`: ``main`` prints it and exits 1."""
    from .auth import Auth
    from .db import Database

    url = _settings(args).database_url

    async def run() -> Any:
        db = Database(url)
        try:
            await db.start()
            return await work(Auth(db))
        finally:
            await db.close()

    return asyncio.run(run())


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _expect(auth: Any, action: str, target: str, before: Any = None, after: Any = None) -> Any:
    """The audit row of the change that follows, written in its transaction: the change and
    its row commit together or not at all (hub.auth.expect_write)."""
    from .auth import audit_in_transactions, expect_write

    audit_in_transactions(auth.db)
    return expect_write(_cli_actor(), action, target, before, after)


def cmd_users_add(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1

    async def add(auth: Any) -> None:
        _expect(auth, "user add", args.name, None, {"name": args.name, "role": args.role})
        await auth.add_user(args.name, password, args.role)

    _with_auth(args, add)
    print(f"user {args.name} added, role {args.role}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    rows = _with_auth(args, lambda auth: auth.users())
    for r in rows:
        print(f"{r['name']}\t{r['role']}\t{'disabled' if r['disabled'] else 'enabled'}")
    return 0


def _set_user(args: argparse.Namespace, action: str, **change: Any) -> int:
    async def change_user(auth: Any) -> None:
        before = await auth.user(args.name)
        _expect(auth, action, args.name, before, {**(before or {}), **change})
        await auth.set_user(args.name, **change)

    _with_auth(args, change_user)
    print(f"user {args.name}: {', '.join(f'{k} {v}' for k, v in change.items())}")
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    return _set_user(args, "user set-role", role=args.role)


def cmd_users_disable(args: argparse.Namespace) -> int:
    return _set_user(args, "user disable", disabled=not args.enable)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    async def create(auth: Any) -> Any:
        pending = _expect(auth, "token create", args.name, None, {"name": args.name})
        made = await auth.create_token(args.name, args.role, _cli_actor())
        await auth.complete_audit(pending, {**made, "token": "[redacted]"})
        return made

    made = _with_auth(args, create)
    print(made["token"])
    print(
        f"token {made['id']} ({args.name}, role {args.role}): shown this once; send it as "
        "Authorization: Bearer <token>",
        file=sys.stderr,
    )
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    for t in _with_auth(args, lambda auth: auth.tokens()):
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        print(f"{t['id']}\t{t['name']}\t{t['role']}\t{state}\tlast used {t['last_used_at']}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    async def revoke(auth: Any) -> bool:
        _expect(auth, "token revoke", args.id)
        found: bool = await auth.revoke_token(args.id)
        return found

    if not _with_auth(args, revoke):
        print(f"no token {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def _option_kind(f: FieldInfo) -> str:
    """An option's type, then 'required', its default, or 'optional' (unset by default)."""
    kind = _type_name(f.annotation)
    if f.is_required():
        return f"{kind}, required"
    default = f.get_default(call_default_factory=True)
    if default is None:
        return f"{kind}, optional"
    return f"{kind}, default {json.dumps(default)}"


_TYPE_NAMES: dict[Any, str] = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "true or false",
    Path: "path",
    # Connectors take secrets only as references (connectors.base.Secret).
    SecretStr: "secret: env:NAME or file:PATH",
}


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, AnyUrl):
        return "URL"
    return getattr(annotation, "__name__", str(annotation))


if __name__ == "__main__":
    raise SystemExit(main())
